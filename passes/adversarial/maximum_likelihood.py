"""maximum_likelihood: KL(data || q) = -H(data) - E_data log q(x), relation =+c (SPEC §9.3).

q is a model with a normalised density in the data's variables; its latents, if any, are then
summed out or bounded by the marginal-likelihood rules. No game: the data's entropy is the one
term its samples do not give, and no parameter moves it.
"""
from __future__ import annotations

from dataclasses import dataclass

from compiler import ir
from compiler.analysis.problems import missing_latents
from compiler.rewrite.rule import Context, Refusal, Rewrite, Rule
from passes.adversarial.densities import explicit_model, log_density
from passes.adversarial.sides import shared_variables, side_name


@dataclass(frozen=True)
class DataFit:
    divergence: ir.Divergence
    model: ir.Block
    binder: tuple[str, ...]


def match_data_fit(node: ir.Divergence, ctx: Context) -> DataFit | Refusal | None:
    """KL(data || q) with q a model that has a density in the data's variables."""
    if node.kind != "KL" or not isinstance(node.p, ir.DataSet):
        return None
    model = explicit_model(ctx.program, node.q)
    if model is None:
        return Refusal(f"{side_name(node.q)} has no normalised density: maximum likelihood needs log q(x)")
    if ctx.program.objective.sense == "estimate":
        return Refusal("the value of KL(data || q) needs the entropy of the data, which its samples do not give; "
                       "maximum likelihood is exact only up to that constant")
    binder, _ = shared_variables(ctx.program, node)
    return DataFit(node, model, binder)


def build_data_fit(found: DataFit, ctx: Context) -> Rewrite:
    """E[x ~ data] -log q(x): the cross-entropy, the divergence less the data's entropy."""
    node, model, binder = found.divergence, found.model, found.binder
    new = ir.Expect(binder, ir.DataSet(), ir.Apply("neg", (log_density(model, binder),)), loc=node.loc)
    latents = missing_latents(ctx.program, ir.Density(model.name, binder))
    conditions = (f"KL(data || {model.name}) = E_data[log data(x)] - E_data[log {model.name}(x)] "
                  f"= -H(data) - E_data[log {model.name}(x)]",
                  "the constant -H(data), the negative entropy of the data, depends on no parameter",
                  f"model {model.name} has a normalised density in {', '.join(binder)}")
    note = "maximum likelihood: one player, no critic"
    if latents:
        note += f"; the latents {', '.join(latents)} of {model.name} are left to the marginal-likelihood rules"
    return Rewrite(new, "=+c", conditions, note=note,
                   facts=(("constant", "-H(data)"), ("model", model.name), ("latents", latents)))


RULE = Rule(
    "maximum_likelihood", problem="divergence", matches=(ir.Divergence,), relation="=+c",
    identity="KL(data || q) = -H(data) - E_data log q(x)",
    match=match_data_fit, build=build_data_fit,
    unmatched="the objective has no KL(data || q) with q a model that has a density")
