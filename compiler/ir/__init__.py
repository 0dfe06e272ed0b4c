"""The IR: frozen expression and declaration nodes (`nodes`), their printer, the table of
builtin operations and distribution families, and located diagnostics.

`from compiler import ir` gives the node types (`ir.Apply`, `ir.Program`, ...); a node
prints as the language would write it (`str(node)`, by `compiler.ir.printer.show`).
"""
from compiler.ir.nodes import *  # noqa: F401,F403  (the node types are the package's namespace)
from compiler.ir.nodes import Node
from compiler.ir.printer import show

Node.__str__ = show
