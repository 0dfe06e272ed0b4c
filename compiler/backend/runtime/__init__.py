"""The runtime of emitted modules, as ordinary Python.

Each module here imports only jax, optax, numpy and the standard library (and its sibling
runtime modules); the data-set loaders of `compiler.data.datasets` (numpy and the standard
library only) and the loader of the author's nets, `compiler.data.python_nets`, are runtime
too. The emitter (`compiler.backend.inline`) copies into an emitted module only the top-level
definitions its program part needs, with their dependencies and imports, so the emitted file
stands alone.

Names a runtime function reads but the program defines (its losses, its constants) come from
`program`, whose values are those of an empty program: the runtime imports them from there
to be importable and testable on its own, and the emitted module's program part defines them.

`MODULES` names the runtime modules (the emitter reads their source; it does not import them)
in the order their definitions appear in an emitted
module (a module-level statement only uses names defined before it); a rule family with
runtime functions of its own adds its module with `register`.
"""
from __future__ import annotations

_HERE = "compiler.backend.runtime"

MODULES: list[str] = [f"{_HERE}.distributions", f"{_HERE}.nets", f"{_HERE}.special", f"{_HERE}.prox",
                      f"{_HERE}.verdict", f"{_HERE}.training", f"{_HERE}.dynamics", "compiler.data.datasets",
                      "compiler.data.python_nets", f"{_HERE}.command"]
PROGRAM = f"{_HERE}.program"   # the names a program part defines (never copied)


def register(module: str) -> None:
    """Add a family's runtime module, by its dotted name (jax, optax, numpy, the standard
    library and the runtime modules only); its definitions come before the command line's."""
    if module not in MODULES:
        MODULES.insert(MODULES.index(f"{_HERE}.command"), module)
