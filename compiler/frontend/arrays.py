"""Type checking of the array additions (SPEC §9.5): literals, indexing, static slices,
`eye/zeros/ones`, `concat`, and one-argument `max/min`.

`ArrayChecks` is mixed into the checker: it uses the checker's `expr` (an expression → typed
node, shape) and `folded` (the value of each checked constant scalar). Indices, bounds and
dimensions are integers known at compile time, kept as `ir.Num` arguments of the node
(`Operation.static`), so shapes stay static and the emitted code indexes with Python ints.

    [a1, ..., an]          shape (n,) + s, every ai of shape s            Apply("array", a)
    w[i]                   w[i] of w : real[n, ...] (i in [-n, n))        Apply("index", (w, i))
    A[i, j]                A[i][j]                                        index(index(A, i), j)
    w[a:b]                 Python's meaning, a non-empty result          Apply("slice", (w, start, stop))
    w[c]                   c a discrete latent of the block with n states Apply("take", (w, c))
                           (Categorical over n, Bernoulli for n = 2): a mixture's component
    eye(n), zeros(d, ...), ones(d, ...), concat(a, b) (axis 0; a scalar is a 1-vector)
    max(v), min(v)         the largest / smallest entry                  Apply("amax"|"amin", (v,))
"""
from __future__ import annotations

from compiler import ir
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import shape_text

Shape = tuple[int, ...]


class ArrayChecks:
    """Checker methods for the array syntax; the checker provides `expr(node, scope)` and `folded`."""

    def static_int(self, node: ir.Node, scope, what: str) -> int:
        """The integer value of a constant expression (a number, a constant, arithmetic on them)."""
        checked, shape = self.expr(node, scope)
        value = self.folded.get(id(checked))
        if shape or value is None or not float(value[1]).is_integer():
            shown = "" if value is None or shape else f" (it is {value[1]:g})"
            raise AttractorError(f"{what} must be an integer known at compile time{shown}", node.loc)
        return int(value[1])

    def array_literal(self, node: ir.Apply, scope) -> tuple[ir.Node, Shape]:
        items = [self.expr(a, scope) for a in node.args]
        first = items[0][1]
        for (item, shape), written in zip(items[1:], node.args[1:]):
            if shape != first:
                raise AttractorError(f"ragged array literal: this entry has shape {shape_text(shape)}, the first has "
                                     f"shape {shape_text(first)}; all entries must have the same shape",
                                     written.loc or node.loc)
        return ir.Apply("array", tuple(a for a, _ in items), loc=node.loc), (len(items),) + first

    def subscript(self, node: ir.Apply, scope) -> tuple[ir.Node, Shape]:
        base, shape = self.expr(node.args[0], scope)
        items = node.args[1:]
        if len(items) > len(shape):
            raise AttractorError(f"{len(items)} indices for a value of shape {shape_text(shape)}", node.loc)
        for k, item in enumerate(items):
            n = shape[0]
            if isinstance(item, ir.Range):
                if k != len(items) - 1:
                    raise AttractorError("a slice a:b may only be the last index (write A[i, a:b])", item.loc)
                lo = self.static_int(item.lo, scope, "a slice bound") if item.lo is not None else None
                hi = self.static_int(item.hi, scope, "a slice bound") if item.hi is not None else None
                start, stop, _ = slice(lo, hi).indices(n)
                if stop <= start:
                    raise AttractorError(f"the slice [{'' if lo is None else lo}:{'' if hi is None else hi}] of an "
                                         f"axis of length {n} is empty", item.loc or node.loc)
                base = ir.Apply("slice", (base, ir.Num(float(start)), ir.Num(float(stop))), loc=node.loc)
                shape = (stop - start,) + shape[1:]
            elif isinstance(item, ir.Ref) and item.name in self.discrete_states:
                states = self.discrete_states[item.name]
                if states != n:
                    raise AttractorError(f"'{item.name}' takes {states} values but the axis it indexes has length {n}",
                                         item.loc or node.loc)
                index, _ = self.expr(item, scope)
                base = ir.Apply("take", (base, index), loc=node.loc)
                shape = shape[1:]
            else:
                i = self.static_int(item, scope, "an index")
                if not -n <= i < n:
                    raise AttractorError(f"index {i} is out of range for an axis of length {n} (valid: {-n} to "
                                         f"{n - 1})", item.loc or node.loc)
                base = ir.Apply("index", (base, ir.Num(float(i % n))), loc=node.loc)
                shape = shape[1:]
        return base, shape

    def construct(self, node: ir.Call, scope) -> tuple[ir.Node, Shape]:
        """eye(n), zeros(d, ...), ones(d, ...), concat(a, b), max(v), min(v)."""
        name, loc = node.name, node.loc
        if node.keys or node.bar:
            raise AttractorError(f"{name} takes plain arguments", loc)
        if name in ("max", "min"):
            value, _ = self.expr(node.args[0], scope)
            return ir.Apply("amax" if name == "max" else "amin", (value,), loc=loc), ()
        if name == "concat":
            if len(node.args) != 2:
                raise AttractorError(f"concat takes 2 arguments, got {len(node.args)}", loc)
            (a, sa), (b, sb) = (self.expr(x, scope) for x in node.args)
            sa, sb = sa or (1,), sb or (1,)
            if sa[1:] != sb[1:]:
                raise AttractorError(f"concat joins along the first axis: shapes {shape_text(sa)} and "
                                     f"{shape_text(sb)} differ after it", loc)
            return ir.Apply("concat", (a, b), loc=loc), (sa[0] + sb[0],) + sa[1:]
        if name == "eye" and len(node.args) != 1:
            raise AttractorError(f"eye takes 1 argument (the size), got {len(node.args)}", loc)
        if not node.args:
            raise AttractorError(f"{name} needs at least one dimension", loc)
        dims = [self.static_int(a, scope, f"a dimension of {name}") for a in node.args]
        bad = next((a for a, d in zip(node.args, dims) if d <= 0), None)
        if bad is not None:
            raise AttractorError(f"the dimensions of {name} must be positive", bad.loc or loc)
        shape = (dims[0], dims[0]) if name == "eye" else tuple(dims)
        return ir.Apply(name, tuple(ir.Num(float(d)) for d in dims), loc=loc), shape
