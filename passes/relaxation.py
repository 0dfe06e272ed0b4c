"""The relaxation rule family (work in progress: no rule registered yet)."""

PASSES: tuple = ()
