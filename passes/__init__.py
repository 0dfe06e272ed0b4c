"""Rule families, one module each; `PIPELINE` is the order in which their passes run."""

PIPELINE: tuple = ()
