"""The splitting rule family (work in progress: no rule registered yet)."""

PASSES: tuple = ()
