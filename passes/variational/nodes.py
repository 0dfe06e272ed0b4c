"""Node types the variational family introduces, each with its lowering to JAX.

* `LogProb`: log F(v; args) of a distribution, summed over its event (the score terms of
  `score_function`);
* `OverDraws`: a reduction across the K draws of an expectation with K > 1 samples
  (`logmeanexp` of the importance-weighted bound, the leave-one-out baselines);
* `ClosedKL`: KL(q || p) in closed form, a SymPy expression summed over the event (`analytic_kl`).
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.backend.lower import DRAWS_AXIS, Emitter, Fn, dist_logprob, lowers
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.math.latex import latex


@dataclass(frozen=True)
class LogProb(ir.Node):
    """log F(value; args) of a distribution, summed over its event; `label` is how it prints
    (the density of the block line it came from, e.g. `q(z | x)`)."""

    dist: ir.Dist
    value: ir.Node
    label: str = ""
    elementwise: bool = False     # one log density per element of the value (not summed): Rao-Blackwellisation

    def printed(self) -> tuple[str, int]:
        text = f"log {self.label or show(self.dist) + '[' + show(self.value) + ']'}"
        return (f"elementwise({text})", 5) if self.elementwise else (text, 3)

    def latexed(self) -> str:
        return rf"\log {latex(self.dist)}\left[{latex(self.value)}\right]"


@lowers(LogProb)
def _lower_logprob(em: Emitter, node: LogProb, fn: Fn) -> str:
    value = fn.tmp(em.lower(node.value, fn), "v")
    if node.elementwise:
        return f"jnp.broadcast_to({dist_logprob(em, node.dist, value, fn, summed=False)}, jnp.shape({value}))"
    return dist_logprob(em, node.dist, value, fn)


@dataclass(frozen=True)
class StopParams(ir.Node):
    """`value` with every learnable parameter behind a stop-gradient, the variables it reads
    left live: for a log density log q_psi(z) at a reparameterised z = T_psi(eps), the gradient
    is d log q / dz * dz/dpsi only, without the score term d log q / dpsi (whose expectation
    under q is zero). Sticking the landing and the doubly reparameterised gradient use it."""

    value: ir.Node

    def printed(self) -> tuple[str, int]:
        return f"stop_params({show(self.value)})", 5

    def latexed(self) -> str:
        return rf"\left.{latex(self.value)}\right|_{{\bot\psi}}"


@lowers(StopParams)
def _lower_stop_params(em: Emitter, node: StopParams, fn: Fn) -> str:
    frozen = fn.tmp(f"jax.lax.stop_gradient({fn.params})", "frozen")
    return em.lower(node.value, fn.view(params=frozen))


@dataclass(frozen=True)
class OverDraws(ir.Node):
    """A reduction of `value` (v) across the K draws of the innermost expectation with K > 1
    samples, evaluated at every draw k: `mean` the mean of v over the K draws, `loo_mean` the mean of v over the other draws,
    `logmeanexp` log (1/K) sum_j exp v_j, `loo_logmeanexp` the same with v_k replaced by
    the mean of the others (VIMCO's baseline)."""

    op: str
    value: ir.Node

    def printed(self) -> tuple[str, int]:
        return f"{self.op}[draws]({show(self.value)})", 5

    def latexed(self) -> str:
        return rf"\operatorname{{{self.op.replace('_', '-')}}}_{{k}}\left({latex(self.value)}\right)"


@lowers(OverDraws)
def _lower_over_draws(em: Emitter, node: OverDraws, fn: Fn) -> str:
    axis = fn.env.get(DRAWS_AXIS)
    if axis is None:
        raise AttractorError(f"{node.op}[draws] needs an enclosing expectation with several draws", node.loc)
    v = fn.tmp(em.lower(node.value, fn), "v")
    every = fn.tmp(f"jax.lax.all_gather({v}, {axis})", "draws")
    k = f"{every}.shape[0]"
    if node.op == "mean":
        return f"jnp.mean({every}, axis=0)"
    if node.op == "logmeanexp":
        return f"(jax.nn.logsumexp({every}, axis=0) - jnp.log({k}))"
    others = fn.tmp(f"(jnp.sum({every}, axis=0) - {v}) / ({k} - 1)", "others")
    if node.op == "loo_mean":
        return others
    mine = f"jax.lax.axis_index({axis})"
    return f"(jax.nn.logsumexp({every}.at[{mine}].set({others}), axis=0) - jnp.log({k}))"


@dataclass(frozen=True)
class ClosedKL(ir.Node):
    """KL(q_family(args_q) || p_family(args_p)) summed over an event of `shape`: `form` is the
    elementwise SymPy closed form, broadcast to the event."""

    q_family: str
    p_family: str
    form: ir.Sym
    shape: tuple[int, ...]

    def printed(self) -> tuple[str, int]:
        args = ", ".join(show(a) for a in self.form.args)
        event = f" : real[{', '.join(map(str, self.shape))}]" if self.shape else ""
        return f"KL[{self.q_family} || {self.p_family}]({args}{event})", 5

    def latexed(self) -> str:
        args = ", ".join(latex(a) for a in self.form.args)
        pair = rf"\mathrm{{{self.q_family}}} \,\|\, \mathrm{{{self.p_family}}}"
        return rf"\mathrm{{KL}}\left[{pair}\right]\left({args}\right)"


@lowers(ClosedKL)
def _lower_closed_kl(em: Emitter, node: ClosedKL, fn: Fn) -> str:
    shape = "(" + "".join(f"{d}, " for d in node.shape) + ")"
    return f"jnp.sum(jnp.broadcast_to({em.lower(node.form, fn)}, {shape}))"


@dataclass(frozen=True)
class LowRankNormalLogProb(ir.Node):
    """log N(value; mean, D + F F^T) of a d-vector (a scalar value: d = 1), D = diag(noise^2)
    (noise a scalar or a d-vector), F = [U_1 diag(s_1) | ... | U_J diag(s_J)] with `factors` U_j
    (d x k_j; a k_j-vector when d = 1) and `scales` s_j (scalars or k_j-vectors): the marginal of
    x = mean + sum_j U_j (z_j - a_j) + eps. Lowered with the K x K capacitance C_K = I + F^T D^-1 F
    and its Cholesky factor L (Woodbury, matrix determinant lemma), r = value - mean:
    -1/2 (d log 2 pi + sum log D_ii + 2 sum log L_ii + r^T D^-1 r - |L^-1 F^T D^-1 r|^2)."""

    value: ir.Node
    mean: ir.Node
    noise: ir.Node
    factors: tuple[ir.Node, ...]
    scales: tuple[ir.Node, ...]
    size: int
    label: str = ""

    def printed(self) -> tuple[str, int]:
        def t(u):
            return f"{show(u)}^T" if isinstance(u, ir.Ref) else f"({show(u)})^T"
        low_rank = " + ".join(f"{show(u)} diag({show(s)})^2 {t(u)}" for u, s in zip(self.factors, self.scales))
        return f"log Normal({show(self.mean)}, {show(self.noise)}^2 I + {low_rank})[{show(self.value)}]", 3

    def latexed(self) -> str:
        low_rank = " + ".join(rf"{latex(u)} \operatorname{{diag}}\left({latex(s)}\right)^2 \left({latex(u)}\right)^\top"
                              for u, s in zip(self.factors, self.scales))
        return (rf"\log \mathcal{{N}}\left[{latex(self.value)};\ {latex(self.mean)},\ "
                rf"\left({latex(self.noise)}\right)^2 I + {low_rank}\right]")


@lowers(LowRankNormalLogProb)
def _lower_low_rank_normal(em: Emitter, node: LowRankNormalLogProb, fn: Fn) -> str:
    d = node.size
    x = fn.tmp(f"jnp.reshape({em.lower(node.value, fn)}, ({d},))", "x")
    r = fn.tmp(f"{x} - jnp.broadcast_to({em.lower(node.mean, fn)}, ({d},))", "r")
    noise = fn.tmp(f"jnp.broadcast_to(jnp.square({em.lower(node.noise, fn)}), ({d},))", "D")
    columns = []
    for u, s in zip(node.factors, node.scales):
        u_ = fn.tmp(f"jnp.reshape({em.lower(u, fn)}, ({d}, -1))", "U")
        columns.append(f"{u_} * jnp.broadcast_to({em.lower(s, fn)}, {u_}.shape[1:])")
    f = fn.tmp(f"jnp.concatenate([{', '.join(columns)}], axis=1)", "F")
    g = fn.tmp(f"{f} / {noise}[:, None]", "G")                                  # D^-1 F
    chol = fn.tmp(f"jnp.linalg.cholesky(jnp.eye({f}.shape[1]) + {f}.T @ {g})", "L")
    y = fn.tmp(f"jax.scipy.linalg.solve_triangular({chol}, {g}.T @ {r}, lower=True)", "y")
    return (f"(-0.5 * ({d} * jnp.log(2 * jnp.pi) + jnp.sum(jnp.log({noise})) + 2 * jnp.sum(jnp.log(jnp.diagonal({chol}))) "
            f"+ jnp.sum({r} * {r} / {noise}) - jnp.sum({y} * {y})))")
