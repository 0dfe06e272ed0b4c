"""The front end: Lark parser (grammar/attractor.lark) to untyped IR, checker to the typed program."""
