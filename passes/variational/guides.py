"""The guide q(z | x) of a Jensen bound: the declared one, checked against the model's latents
and supports, or an automatic amortised mean-field guide."""
from __future__ import annotations

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.ir.builtins import DISTRIBUTIONS
from compiler.ir.diagnostics import AttractorError
from passes.variational.sampling import fresh_name

SUPPORT_TEXT = {"real": "the real line", "positive": "(0, inf)", "binary": "{0, 1}",
                "categorical": "{0, ..., K-1}", "interval": "an interval"}
AUTOMATIC = {"real": "Normal", "positive": "LogNormal", "binary": "Bernoulli"}


def _support(dist: ir.Dist, program: ir.Program) -> tuple:
    """The support of a law: its kind, and for an interval the bounds (None if not constant)."""
    kind = DISTRIBUTIONS[dist.family].support
    if kind == "interval":
        return kind, const_value(dist.param("low"), program), const_value(dist.param("high"), program)
    return (kind,)


def _support_text(support: tuple) -> str:
    if support[0] == "interval":
        return "[" + ", ".join("?" if b is None else f"{b:g}" for b in support[1:]) + "]"
    return SUPPORT_TEXT[support[0]]


def declared_guide(model: ir.Block, latents: tuple[str, ...], observed: tuple[str, ...],
                   program: ir.Program) -> ir.Block | None:
    """The declared guide of `model` (checked against its latents), or None."""
    guides = [b for b in program.of_type(ir.Block) if b.kind == "guide" and set(b.latents) & set(model.random_vars())]
    if not guides:
        return None
    if len(guides) > 1:
        raise AttractorError(f"model {model.name} has several guides ({', '.join(g.name for g in guides)}): "
                             "declare one guide that draws all its latents", guides[1].loc)
    guide = guides[0]
    for z in guide.latents:
        if z in observed or z not in latents and z in model.random_vars():
            raise AttractorError(f"guide {guide.name} draws '{z}', which model {model.name} observes: "
                                 "a guide draws latents only", guide.loc)
        if z not in latents:
            raise AttractorError(f"guide {guide.name} draws '{z}', but model {model.name} has no latent '{z}'",
                                 guide.loc)
    missing = [z for z in latents if z not in guide.latents]
    if missing:
        raise AttractorError(f"guide {guide.name} does not draw model {model.name}'s latent '{missing[0]}': "
                             f"a guide must draw every latent ({', '.join(latents)})", guide.loc)
    unbound = [g for g in guide.given if g not in observed]
    if unbound:
        raise AttractorError(f"guide {guide.name} is given '{unbound[0]}', which log {model.name}(...) "
                             "does not observe", guide.loc)
    return guide


def supports_agree(guide: ir.Block, model: ir.Block, program: ir.Program) -> tuple[str, ...]:
    """Side condition: for every latent, supp q = supp p (so the bound is finite and the
    posterior is covered), one line each; refused with a diagnostic otherwise."""
    out = []
    for z in guide.latents:
        q_line, p_line = guide.line(z), model.line(z)
        if not isinstance(q_line, ir.Tilde) or not isinstance(p_line, ir.Tilde):
            raise AttractorError(f"'{z}' must be drawn (z ~ ...) in both guide {guide.name} and model {model.name}",
                                 q_line.loc)
        sq, sp_ = _support(q_line.dist, program), _support(p_line.dist, program)
        if sq[0] != sp_[0] or None not in sq + sp_ and sq != sp_:
            raise AttractorError(
                f"guide {guide.name} draws '{z}' from {q_line.dist.family} (support {_support_text(sq)}), but model "
                f"{model.name}'s '{z}' is {p_line.dist.family} (support {_support_text(sp_)}): the guide's support "
                "must be the latent's support, or the bound is -infinity or never tight", q_line.dist.loc or q_line.loc)
        assumed = " (bounds not constant: assumed equal)" if None in sq + sp_ else ""
        out.append(f"supp {guide.name}({z}) = supp {model.name}({z}) = {_support_text(sp_)} "
                   f"({q_line.dist.family} guide, {p_line.dist.family} prior){assumed}")
    return tuple(out)


def automatic_guide(model: ir.Block, latents, observed, program: ir.Program, owner: str,
                    hidden: int | None) -> tuple[ir.Block, tuple[ir.Net, ...]]:
    """An amortised mean-field guide q(z | observed): per latent, the family of its support
    (Normal on the real line: diagonal, loc and softplus(scale) from two MLPs of the observed
    values; LogNormal on (0, inf); Bernoulli with MLP logits on {0, 1})."""
    taken = {getattr(d, "name", "") for d in program.decls} | set(model.random_vars())
    for d in program.of_type(ir.Block):
        taken |= {ln.name for ln in d.lines}
    shapes = dict(program.data_vars)
    width_in = 0
    for v in observed:
        if len(shapes[v]) > 1:
            raise AttractorError(f"an automatic guide reads the observed values with an MLP: '{v}' must be a scalar "
                                 "or a vector", model.loc)
        width_in += shapes[v][0] if shapes[v] else 1
    name = fresh_name(f"q_{model.name}", taken)
    lines, nets = [], []
    for z in latents:
        line = model.line(z)
        kind = DISTRIBUTIONS[line.dist.family].support
        if kind not in AUTOMATIC or len(line.shape or ()) > 1:
            not_vector = ", not a vector" if len(line.shape or ()) > 1 else ""
            raise AttractorError(f"no automatic guide for '{z}' ({line.dist.family}, support {SUPPORT_TEXT[kind]}"
                                 f"{not_vector}): declare guide q({z} | ...)", line.loc)
        width_out = line.shape[0] if line.shape else 1
        width = hidden or min(256, max(32, 2 * (width_in + width_out)))
        family = AUTOMATIC[kind]
        keys = ("logits",) if family == "Bernoulli" else ("loc", "scale")
        made = [ir.Net(fresh_name(f"{name}_{z}_{k}", taken), (width_in, width, width_out), owner=owner) for k in keys]
        calls = [ir.NetCall(n.name, tuple(ir.Ref(v, "given") for v in observed)) for n in made]
        if family != "Bernoulli":
            calls[1] = ir.Apply("softplus", (calls[1],))
        lines.append(ir.Tilde(z, ir.Dist(family, keys, tuple(calls), line.shape or ()), line.shape))
        nets += made
    return ir.Block("guide", name, tuple(lines), tuple(latents), tuple(observed), loc=model.loc), tuple(nets)
