"""The lagrangian rule family (work in progress: no rule registered yet)."""

PASSES: tuple = ()
