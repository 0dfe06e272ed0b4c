"""Node types the adversarial family introduces, and their lowering.

`Grad(expr, var)` is ∇_var expr and `Laplacian(expr, var)` is Δ_var expr = tr ∇²_var expr, both at
the current value of the bound variable `var`; denoising_score writes the score ∇_x log p(x) and
its Laplacian with them. Each lowers to `jax.grad` / `jax.hessian` of a local function
`def f(at): return expr[var := at]`.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.backend.lower import Emitter, Fn, ident, lowers, needs_key
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.math.latex import latex


@dataclass(frozen=True)
class Grad(ir.Node):
    """∇_var expr: the gradient of the scalar `expr` in the bound variable `var`, at its value
    (the score ∇_x log p(x) when `expr` is a log density)."""

    expr: ir.Node
    var: str

    def printed(self) -> tuple[str, int]:
        return f"grad_{self.var}({show(self.expr)})", 5

    def latexed(self) -> str:
        return rf"\nabla_{{{self.var}}} {latex(self.expr)}"


@dataclass(frozen=True)
class Laplacian(ir.Node):
    """Δ_var expr = tr ∇²_var expr, at the value of the bound variable `var`."""

    expr: ir.Node
    var: str

    def printed(self) -> tuple[str, int]:
        return f"laplacian_{self.var}({show(self.expr)})", 5

    def latexed(self) -> str:
        return rf"\Delta_{{{self.var}}} {latex(self.expr)}"


def _function_of(em: Emitter, node: Grad | Laplacian, fn: Fn) -> tuple[str, str]:
    """Emit `def f(at): return expr[var := at]`; return (f, the current value of var)."""
    if needs_key(node.expr):
        raise AttractorError(f"cannot differentiate {show(node.expr)} in {node.var}: it draws random numbers", node.loc)
    at = em.lower(ir.Ref(node.var), fn)
    name, arg = em.fresh("of_" + ident(node.var)), em.fresh(ident(node.var) + "_")
    inner = fn.child({node.var: arg}, None)
    inner.emit(f"return {em.lower(node.expr, inner)}")
    fn.emit(f"def {name}({arg}):")
    fn.lines.extend(inner.body())
    return name, fn.tmp(at, ident(node.var) + "_")


@lowers(Grad)
def _lower_grad(em: Emitter, node: Grad, fn: Fn) -> str:
    f, at = _function_of(em, node, fn)
    return f"jax.grad({f})({at})"


@lowers(Laplacian)
def _lower_laplacian(em: Emitter, node: Laplacian, fn: Fn) -> str:
    f, at = _function_of(em, node, fn)
    return f"jnp.trace(jnp.reshape(jax.hessian({f})({at}), (jnp.size({at}), jnp.size({at}))))"
