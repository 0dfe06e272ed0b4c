"""Traversal strategies, kept apart from the rules (in the spirit of SymPy's `strategies`).

A rule is a function `(node, ctx) -> Rewrite | None`; these functions decide where rules
are tried. Each position is visited with its polarity: +1 if the objective increases with
the subterm, -1 if it decreases, 0 if neither is known.
"""
from __future__ import annotations

from typing import Callable, Iterator

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.ir.builtins import FUNCTIONS


def _sign_of(node: ir.Node, program) -> int:
    v = const_value(node, program)
    if v is None:
        return 0
    return 1 if v > 0 else (-1 if v < 0 else 0)


def child_polarity(node: ir.Node, index: int, program: ir.Program | None) -> int:
    """How the parent's value moves with its `index`-th child (+1, -1 or 0)."""
    if isinstance(node, ir.Apply):
        fn, args = node.fn, node.args
        if fn == "add":
            return 1
        if fn == "sub":
            return 1 if index == 0 else -1
        if fn == "neg":
            return -1
        if fn == "mul":
            return _sign_of(args[1 - index], program)
        if fn == "div":
            return _sign_of(args[1], program) if index == 0 else 0
        if fn in FUNCTIONS and fn not in ("stop",):
            return FUNCTIONS[fn].monotone
        return 0
    if isinstance(node, ir.Expect):
        return 1 if index == 1 else 0   # children are (source, body)
    if isinstance(node, ir.Let):
        return 1 if index == 1 else 0
    if isinstance(node, ir.Surrogate):
        return 1
    return 0


# A path is a linked list from a position up to the root: None at the root, else
# (parent path, parent node, index of the child). Linked, so traversal stays linear.
Path = tuple | None


def ancestors(path: Path) -> Iterator[tuple[ir.Node, int]]:
    """(parent, child index) pairs from the nearest parent up to the root."""
    while path is not None:
        path, parent, index = path
        yield parent, index


def child_indices(path: Path) -> tuple[int, ...]:
    """The child indices from the root down to the position at the end of `path`."""
    return tuple(reversed([index for _, index in ancestors(path)]))


def positions(root: ir.Node, program: ir.Program | None = None,
              polarity: int = 1) -> Iterator[tuple[ir.Node, int, Path]]:
    """Every subterm, outermost first (pre-order), with its polarity and its path."""
    return _preorder([(root, polarity, None)], program)


def positions_from(root: ir.Node, indices: tuple[int, ...], program: ir.Program | None = None,
                   polarity: int = 1) -> Iterator[tuple[ir.Node, int, Path]]:
    """The positions of `positions(root)` from the one at child `indices` on, after its
    ancestors (outermost first): the subterms before it that do not contain it are skipped."""
    stack: list[tuple[ir.Node, int, Path]] = []
    node, pol, path = root, polarity, None
    for i in indices:
        yield node, pol, path
        kids = _children(node)
        for j in range(len(kids) - 1, i, -1):   # the later siblings wait on the stack
            stack.append((kids[j], pol * child_polarity(node, j, program), (path, node, j)))
        node, pol, path = kids[i], pol * child_polarity(node, i, program), (path, node, i)
    stack.append((node, pol, path))
    yield from _preorder(stack, program)


def _preorder(stack: list[tuple[ir.Node, int, Path]], program) -> Iterator[tuple[ir.Node, int, Path]]:
    while stack:
        node, pol, path = stack.pop()
        yield node, pol, path
        kids = _children(node)
        for i in range(len(kids) - 1, -1, -1):
            stack.append((kids[i], pol * child_polarity(node, i, program), (path, node, i)))


def _children(node: ir.Node) -> tuple[ir.Node, ...]:
    return node.args if type(node) is ir.Apply else node.children()   # Apply: the common case, read directly


def replace_at(path: Path, new: ir.Node) -> ir.Node:
    """Rebuild the root with the node at the end of `path` replaced by `new`."""
    for parent, i in ancestors(path):
        if type(parent) is ir.Apply:    # most ancestors, on a long sum: rebuilt directly
            new = ir.Apply(parent.fn, parent.args[:i] + (new,) + parent.args[i + 1:], loc=parent.loc)
            continue
        kids = list(parent.children())
        kids[i] = new
        new = parent.with_children(tuple(kids))
    return new


def bottom_up(root: ir.Node, fn: Callable[[ir.Node], ir.Node | None]) -> ir.Node:
    """Apply `fn` to every node, children first; None keeps the node."""
    kids = root.children()
    if kids:
        root = root.with_children(tuple(bottom_up(c, fn) for c in kids))
    out = fn(root)
    return root if out is None else out
