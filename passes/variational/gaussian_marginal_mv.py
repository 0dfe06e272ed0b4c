"""gaussian_marginal for vector latents entering through `@` / `dot`: a linear-Gaussian model
whose latents correlate the components of x (probabilistic PCA, factor analysis), relation =.

    z_j ~ Normal(a_j, s_j) : real[k_j] independent,  x ~ Normal(b + sum_j U_j z_j, sigma) : real[d]
    =>  x ~ N(m, C),  m = b + sum_j U_j a_j,  C = D + F F^T,
        D = diag(sigma^2) (sigma a scalar or of x's shape),  F = [U_1 diag(s_1) | ... | U_J diag(s_J)]

(x is Gaussian as an affine image of the independent Gaussians (z_1, ..., z_J, eps), eps ~ N(0, D);
its mean is the image of the means and its covariance sum_j U_j Cov(z_j) U_j^T + D.) The log
density is lowered in the low-rank form (`LowRankNormalLogProb`, K = sum_j k_j columns in F):
with the capacitance matrix C_K = I_K + F^T D^-1 F (K x K) and its Cholesky factor L,

    Woodbury:                 C^-1 = D^-1 - D^-1 F C_K^-1 F^T D^-1
    matrix determinant lemma: log det C = log det D + log det C_K = sum log D_ii + 2 sum log L_ii
    log N(x; m, C) = -1/2 (d log 2 pi + log det C + r^T D^-1 r - |L^-1 F^T D^-1 r|^2),  r = x - m

O(d K^2 + K^3), and stable: C_K >= I is well conditioned whatever F. Both identities are checked
by SymPy on generic symbols (`low_rank_normal_identities`), recorded in the derivation.

The coefficients U_j = d mean / d z_j are read from the IR of the mean: `linear_coefficients`
walks it through +, -, negation, scaling by a latent-free factor, `M @ e` (M latent-free),
`dot(w, e)` and division by a latent-free factor; anything else reading a latent (a network, a
nonlinear function, a product of two latent terms, `z @ M`) is refused, so the mean is affine in
the latents by construction and U_j is exact. Side conditions as for the elementwise rule: the
model draws its latents and one observed x, nothing else; each latent is Normal with a law that
reads no random variable; the scale of x reads no latent. The latents here are vectors (rank 1),
at least one of them entering through `@` or `dot`, or scalars shared by the components of a
vector x (a random intercept c z: U = diag(c) 1, a d x 1 column, `Column`); otherwise it is the
elementwise rule's case.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import log_marginal
from compiler.ir.printer import show
from compiler.math.distributions import low_rank_normal_identities
from compiler.rewrite.rule import Context, Refusal, Rewrite
from passes.variational.nodes import LowRankNormalLogProb


class NotLinear(ValueError):
    """The mean of x is not affine in the latents in a form `linear_coefficients` reads."""


@dataclass(frozen=True)
class Identity:
    """d z / d z = I_k for a latent of k components (materialised as eye(k) only when needed)."""

    size: int

    def node(self) -> ir.Node:
        return ir.Apply("eye", (ir.Num(self.size),))


@dataclass(frozen=True)
class Column:
    """The coefficient of a scalar latent z in a vector expression: the term is c z, c a scalar or a
    vector; as a factor of the marginal it is the d x 1 matrix diag(c) 1 = (c * eye(d)) @ ones(d, 1)
    (a scalar z shared by the d components of x correlates them: C = D + s^2 c c^T)."""

    c: ir.Node

    def node(self, d: int) -> ir.Node:
        return ir.Apply("matmul", (ir.Apply("mul", (self.c, Identity(d).node())),
                                   ir.Apply("ones", (ir.Num(d), ir.Num(1)))))


@dataclass
class Linear:
    """An expression as offset + sum_z coefficients[z] z: `offset` None is 0; `dim` the length of
    the expression's value (0: a scalar, None: not known here)."""

    offset: ir.Node | None
    coefficients: dict
    dim: int | None


def _resolved(expr: ir.Node, block: ir.Block) -> ir.Node:
    """`expr` with the block's assignments (`y = ...` lines) substituted, last first."""
    for line in reversed(block.lines):
        if isinstance(line, ir.Assign) and line.name in ir.free_names(expr):
            expr = ir.substitute(expr, line.name, line.value)
    return expr


def _declared_dim(node: ir.Node, program: ir.Program, rows: bool = False) -> int | None:
    """The length of a latent-free value (its number of rows if `rows`), from declarations: 0 for
    a number or a scalar, None where it cannot be told without the checker."""
    if isinstance(node, ir.Num):
        return 0
    if isinstance(node, ir.Ref):
        decl = program.decl(node.name)
        shape = None
        if isinstance(decl, ir.Param):
            shape = tuple(decl.shape)
        elif isinstance(decl, ir.DataDecl):
            shape = tuple(decl.shapes[decl.names.index(node.name)])
        if shape is None:
            return None
        if rows:
            return shape[0] if len(shape) == 2 else None
        return 0 if not shape else (shape[0] if len(shape) == 1 else None)
    if isinstance(node, ir.Apply) and node.fn in ("add", "sub", "mul", "div", "neg", "exp", "log", "sqrt",
                                                  "softplus", "square", "abs"):
        dims = [_declared_dim(a, program) for a in node.args]
        if any(d is None for d in dims):
            return None
        return max(dims)
    return None


def _add(a: ir.Node | None, b: ir.Node | None, fn: str = "add") -> ir.Node | None:
    if b is None:
        return a
    if a is None:
        return b if fn == "add" else ir.Apply("neg", (b,))
    if isinstance(b, ir.Apply) and b.fn == "neg":            # a + -c = a - c, a - -c = a + c
        return ir.Apply("sub" if fn == "add" else "add", (a, b.args[0]))
    return ir.Apply(fn, (a, b))


def _materialised(u) -> ir.Node:
    return u.node() if isinstance(u, Identity) else u


def linear_coefficients(node: ir.Node, latents: dict[str, int], program: ir.Program,
                        through: list[str]) -> Linear:
    """`node` = offset + sum_z U_z z, U_z = d node / d z (exact: every step keeps the form affine).
    `latents`: name -> number of components; the operations through which a latent passed
    (`matmul`, `dot`) are appended to `through`."""
    if not (ir.free_names(node) & set(latents)):
        return Linear(node, {}, None)
    if isinstance(node, ir.Ref):
        if latents[node.name] == 0:
            return Linear(None, {node.name: Column(ir.Num(1.0))}, 0)
        return Linear(None, {node.name: Identity(latents[node.name])}, latents[node.name])
    if not isinstance(node, ir.Apply):
        raise NotLinear(f"{show(node)} reads a latent and is not an affine operation of it")
    fn, args = node.fn, node.args
    if fn in ("add", "sub"):
        left, right = (linear_coefficients(a, latents, program, through) for a in args)
        coefficients = dict(left.coefficients)
        for z, u in right.coefficients.items():
            if isinstance(u, Column):
                coefficients[z] = Column(_add(coefficients[z].c if z in coefficients else None, u.c, fn))
                continue
            coefficients[z] = (_add(_materialised(coefficients[z]), _materialised(u), fn) if z in coefficients
                               else (u if fn == "add" else ir.Apply("neg", (_materialised(u),))))
        return Linear(_add(left.offset, right.offset, fn), coefficients, left.dim if left.dim is not None else right.dim)
    if fn == "neg":
        inner = linear_coefficients(args[0], latents, program, through)
        return Linear(None if inner.offset is None else ir.Apply("neg", (inner.offset,)),
                      {z: Column(ir.Apply("neg", (u.c,))) if isinstance(u, Column) else ir.Apply("neg", (_materialised(u),))
                       for z, u in inner.coefficients.items()}, inner.dim)
    if fn in ("mul", "div"):
        free = [i for i, a in enumerate(args) if not (ir.free_names(a) & set(latents))]
        if not free or (fn == "div" and free != [1]):
            raise NotLinear(f"{show(node)}: a product or quotient of latent terms is not affine in them")
        i = free[0]
        factor = args[i] if fn == "mul" else ir.Apply("div", (ir.Num(1.0), args[1]))
        inner = linear_coefficients(args[1 - i], latents, program, through)
        offset = None if inner.offset is None else (ir.Apply("mul", (args[i], inner.offset)) if fn == "mul"
                                                    else ir.Apply("div", (inner.offset, args[1])))
        dim = inner.dim if inner.dim else _declared_dim(args[i], program)
        return Linear(offset, {z: Column(_times(factor, u.c)) if isinstance(u, Column)
                               else _scaled(factor, u, inner.dim, program, node) for z, u in inner.coefficients.items()},
                      dim)
    if fn == "matmul":
        left, right = args
        if ir.free_names(left) & set(latents):
            raise NotLinear(f"{show(node)}: a latent on the left of @ (write M @ z)")
        inner = linear_coefficients(right, latents, program, through)
        if any(isinstance(u, Column) for u in inner.coefficients.values()) and not inner.dim:
            raise NotLinear(f"{show(node)}: a scalar latent on the right of @ (scale a vector by it instead)")
        through.append("matmul")
        return Linear(None if inner.offset is None else ir.Apply("matmul", (left, inner.offset)),
                      {z: left if isinstance(u, Identity) else Column(ir.Apply("matmul", (left, u.c)))
                       if isinstance(u, Column) else ir.Apply("matmul", (left, u))
                       for z, u in inner.coefficients.items()},
                      _declared_dim(left, program, rows=True))
    if fn == "dot":
        free = [a for a in args if not (ir.free_names(a) & set(latents))]
        if not free:
            raise NotLinear(f"{show(node)}: a dot product of two latent terms is not affine in them")
        w = free[0]
        inner = linear_coefficients(args[1] if w is args[0] else args[0], latents, program, through)
        if any(isinstance(u, Column) for u in inner.coefficients.values()) and not inner.dim:
            raise NotLinear(f"{show(node)}: a scalar latent inside dot (scale the dot product by it instead)")
        through.append("dot")
        return Linear(None if inner.offset is None else ir.Apply("dot", (w, inner.offset)),
                      {z: w if isinstance(u, Identity) else Column(ir.Apply("dot", (w, u.c))) if isinstance(u, Column)
                       else ir.Apply("matmul", (w, u)) for z, u in inner.coefficients.items()}, 0)
    raise NotLinear(f"{show(node)} reads a latent through {fn}, which is not affine")


def _times(factor: ir.Node, c: ir.Node) -> ir.Node:
    """factor * c, without a factor 1."""
    return factor if c == ir.Num(1.0) else ir.Apply("mul", (factor, c))


def _scaled(factor: ir.Node, u, dim: int | None, program: ir.Program, where: ir.Node) -> ir.Node:
    """diag(factor) U for a factor broadcast over the rows of U: factor * U when the factor is a
    scalar, (factor * eye(dim)) @ U when it is a vector (factor * eye(dim) is diag(factor))."""
    if _declared_dim(factor, program) == 0:
        return ir.Apply("mul", (factor, _materialised(u)))
    if isinstance(u, Identity):
        return ir.Apply("mul", (factor, u.node()))           # (factor * eye(k))[i, j] = factor_j delta_ij
    if not dim:
        raise NotLinear(f"{show(where)}: the length of the vector scaling a latent term is not known")
    return ir.Apply("matmul", (ir.Apply("mul", (factor, Identity(dim).node())), u))


@dataclass(frozen=True)
class LowRankGaussian:
    node: ir.Apply
    negated: bool
    density: ir.Density
    model: ir.Block
    observed: str
    latents: tuple[str, ...]
    loc: ir.Node                          # m = b + sum_j U_j a_j
    noise: ir.Node                        # sigma
    factors: tuple[ir.Node, ...]          # U_j
    scales: tuple[ir.Node, ...]           # s_j
    size: int                             # d (1 for a scalar x)
    through: tuple[str, ...]


def match_low_rank(node: ir.Apply, ctx: Context) -> LowRankGaussian | Refusal | None:
    """The model's marginal as a low-rank multivariate Normal; None where no latent enters the
    mean of x through `@` or `dot` (the elementwise rule's case, or not linear-Gaussian)."""
    found = log_marginal(node, ctx.program)
    if found is None:
        return None
    (negated, density, latents), program = found, ctx.program
    model = program.decl(density.model)
    if model.kind != "model" or density.given or len(density.vars) != 1:
        return None
    (x,) = density.vars
    random = set(model.random_vars())
    if random != set(latents) | {x}:
        return None
    x_line = model.line(x)
    if x_line.dist.family != "Normal":
        return None
    x_shape = tuple(x_line.shape or ())
    sizes: dict[str, int] = {}
    for z in latents:
        shape = tuple(model.line(z).shape or ())
        if len(shape) == 1:
            sizes[z] = shape[0]
        elif not shape and len(x_shape) == 1:
            sizes[z] = 0             # a scalar latent shared by the components of a vector x: a column of F
    mean = _resolved(x_line.dist.param("loc"), model)
    through: list[str] = []
    try:
        linear = linear_coefficients(mean, sizes, program, through)
    except NotLinear as e:
        return Refusal(f"the mean of '{x}': {e}", density.loc) if _mixes(mean, latents) else None
    if any(isinstance(u, Column) for u in linear.coefficients.values()):
        through.append("a scalar latent shared by the components")
    if not through:
        return None
    if len(x_shape) > 1:
        return Refusal(f"'{x}' has shape {list(x_shape)}: a vector or a scalar is needed", density.loc)
    for z in latents:
        line = model.line(z)
        if line.dist.family != "Normal":
            return Refusal(f"latent '{z}' of {model.name} is {line.dist.family}, not Normal", density.loc)
        if ir.free_names(_resolved(line.dist, model)) & random:
            return Refusal(f"the law of latent '{z}' reads a random variable", density.loc)
        if z not in sizes and z in ir.free_names(mean):
            return Refusal(f"latent '{z}' is not a vector: it enters the mean of '{x}' through @ or dot with "
                           "vector latents", density.loc)
    scale = _resolved(x_line.dist.param("scale"), model)
    if ir.free_names(scale) & random:
        return Refusal(f"the scale of '{x}' depends on the latents: {show(scale)}", density.loc)
    size = x_shape[0] if x_shape else 1
    loc, factors, scales, used = linear.offset, [], [], []
    for z in latents:
        if z not in linear.coefficients:
            continue             # a latent the mean does not read integrates to 1
        coefficient = linear.coefficients[z]
        u = coefficient.node(size) if isinstance(coefficient, Column) else _materialised(coefficient)
        k = sizes[z] or 1
        line = model.line(z)
        a = _resolved(line.dist.param("loc"), model)
        if not (isinstance(a, ir.Num) and a.value == 0):
            a_vec = a if _declared_dim(a, program) == sizes[z] > 0 else ir.Apply("mul", (a, ir.Apply("ones", (ir.Num(k),))))
            loc = _add(loc, ir.Apply("dot" if not x_shape else "matmul", (u, a_vec)))
        factors.append(u)
        scales.append(_resolved(line.dist.param("scale"), model))
        used.append(z)
    return LowRankGaussian(node, negated, density, model, x, tuple(used), loc if loc is not None else ir.Num(0.0),
                           scale, tuple(factors), tuple(scales), size, tuple(dict.fromkeys(through)))


def _mixes(mean: ir.Node, latents) -> bool:
    """Some latent reaches the mean through `@` or `dot` (this rule's case, so its refusal is the one to show)."""
    return any(isinstance(n, ir.Apply) and n.fn in ("matmul", "dot") and ir.free_names(n) & set(latents)
               for n in mean.walk())


def build_low_rank(found: LowRankGaussian, ctx: Context) -> Rewrite:
    log_p = LowRankNormalLogProb(ir.Ref(found.observed, "data"), found.loc, found.noise, found.factors, found.scales,
                                 found.size)
    new = ir.Apply("neg", (log_p,)) if found.negated else log_p
    zs = ", ".join(found.latents)
    coefficients = tuple(show(u) for u in found.factors)
    conditions = (f"{found.model.name}: {zs} ~ Normal independent vectors, from laws that read no random variable",
                  f"the mean of '{found.observed}' is affine in {zs} (read through {', '.join(found.through)}): "
                  f"d mean / d({zs}) = {', '.join(coefficients)}; its scale reads no latent",
                  "x = b + sum_j U_j z_j + eps is an affine image of independent Normals: "
                  "x ~ N(b + sum_j U_j a_j, diag(sigma^2) + sum_j U_j diag(s_j^2) U_j^T); log density by Woodbury and "
                  "the matrix determinant lemma on the capacitance I + F^T D^-1 F",
                  low_rank_normal_identities())
    return Rewrite(new, "=", conditions, note=f"exact marginal likelihood: {zs} integrated out in closed form "
                   "(a low-rank multivariate Normal), no guide, no bound",
                   facts=(("latents", found.latents), ("slopes", coefficients), ("form", "low-rank")))
