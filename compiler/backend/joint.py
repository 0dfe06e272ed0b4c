"""Every player's loss in one function, each shared random draw made once.

The players of a game average over the same things: a GAN's generator and discriminator both
take E[x ~ data] and E[eps ~ Normal(0, 1)] of terms in gen(eps). Lowered one loss at a time,
each loss draws its own copy of the same noise, and on the CPU XLA does not merge two copies of
a random-number loop inside the training loop, so the noise and all that is computed from it
(the generator's forward pass) is computed once per player.

`joint_losses(ctx, key, batch)` lowers the losses together. Player p's loss reads the
parameters `ctx[p]`, so that one gradient of sum_p sign_p L_p(ctx[p]), each player's own
parameters differentiated in its own context, is the vector field. Expectations with the same
header (source, binder, estimator, number of draws) become one function, mapped over the batch
or called on one key, that returns every member's body; a draw whose distribution is the same
in every context (no parameters, the same bound values) is made once, other draws reuse the
same key in each context. Merged expectations are found through arithmetic, comparisons, net
calls and closed forms only: anything that binds names or changes the parameters (let, a
Gaussian smoothing of parameters) is lowered in its context as it stands.
"""
from __future__ import annotations

from compiler import ir
from compiler.analysis.problems import depends_on
from compiler.backend.lower import DRAWS_AXIS, Emitter, Fn, dist_sample, ident, key_literal, needs_key
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show

_THROUGH = (ir.Apply, ir.Compare, ir.NetCall, ir.Sym, ir.Surrogate)   # lowered in the caller's scope, binding nothing


def outer_expectations(node: ir.Node) -> list[ir.Expect]:
    """The expectations of `node` reached through `_THROUGH` nodes only, left to right."""
    out, stack = [], [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ir.Expect):
            out.append(n)
        elif isinstance(n, _THROUGH):
            stack.extend(reversed(n.children()))
    return out


def _header(e: ir.Expect) -> tuple:
    return (e.source, e.binder, e.estimator, e.samples)


def _mergeable(e: ir.Expect) -> bool:
    return isinstance(e.source, (ir.DataSet, ir.Dist, ir.Sample))


def lower_together(em: Emitter, members: list[tuple[Fn, ir.Node]]) -> list[str]:
    """Python expressions for each (view, node), the views being views of one scope: the
    expectations the nodes share are lowered once, in order of first appearance."""
    groups: dict[tuple, list[tuple[Fn, ir.Expect]]] = {}
    for fn, node in members:
        for e in outer_expectations(node):
            if _mergeable(e) and e not in fn.known:
                group = groups.setdefault(_header(e), [])
                if not any(f is fn and x == e for f, x in group):
                    group.append((fn, e))
    scope = members[0][0]
    for header, group in groups.items():
        lower_group = _data_group if isinstance(header[0], ir.DataSet) else _sample_group
        for (fn, e), value in zip(group, lower_group(em, group, scope)):
            fn.known[e] = value
    return [em.lower(node, fn) for fn, node in members]


def _data_group(em: Emitter, group: list[tuple[Fn, ir.Expect]], scope: Fn) -> list[str]:
    """E[x ~ data] of every member: one vmap over the batch returning each member's body."""
    binder = group[0][1].binder
    keyed = any(needs_key(e.body) for _, e in group)
    bound = {v: f"v_{ident(v)}" for v in binder}
    inner = scope.child(bound, "key" if keyed else None)
    views = [inner.view(env={**fn.env, **bound}, params=fn.params) for fn, _ in group]
    bodies = lower_together(em, [(view, e.body) for view, (_, e) in zip(views, group)])
    inner.emit("return (" + "".join(f"{b}, " for b in bodies) + ")")
    name = em.fresh("per_example")
    scope.emit(f"def {name}({', '.join((['key'] if keyed else []) + list(bound.values()))}):")
    scope.lines.extend(inner.body())
    mapped = [f"batch[{key_literal(v)}]" for v in binder]
    if keyed:
        mapped.insert(0, f"jax.random.split({scope.subkey()}, batch[{key_literal(binder[0])}].shape[0])")
    out = scope.tmp(f"jax.vmap({name})({', '.join(mapped)})", "per_examples")
    return [f'(batch["#n"] * jnp.mean({out}[{i}], axis=0))' if e.reduce == "sum" else f"jnp.mean({out}[{i}], axis=0)"
            for i, (_, e) in enumerate(group)]


def _sample_group(em: Emitter, group: list[tuple[Fn, ir.Expect]], scope: Fn) -> list[str]:
    """E[z ~ source] of every member: one draw function returning each member's body."""
    first = group[0][1]
    name = em.fresh("draw")
    inner = scope.child({}, "key")
    extra = {DRAWS_AXIS: f'"{name}"'} if first.samples > 1 else {}
    views = [inner.view(env={**fn.env, **extra}, params=fn.params) for fn, _ in group]
    src = first.source
    if isinstance(src, ir.Dist):
        _draw(em, first.binder[0], src, inner.tmp(inner.subkey(), "k"), inner, views)
    else:
        _draw_block(em, src, inner, views)
    for view in views:
        for v in first.binder:
            if v not in view.env:
                raise AttractorError(f"{show(src)} does not draw '{v}'", first.loc)
            if first.estimator == "score_function":
                view.env[v] = view.tmp(f"jax.lax.stop_gradient({view.env[v]})", ident(v) + "_")
    bodies = lower_together(em, [(view, e.body) for view, (_, e) in zip(views, group)])
    inner.emit("return (" + "".join(f"{b}, " for b in bodies) + ")")
    scope.emit(f"def {name}(key):")
    scope.lines.extend(inner.body())
    if first.samples > 1:
        out = scope.tmp(f"jax.tree.map(lambda a: jnp.mean(a, axis=0), jax.vmap({name}, axis_name=\"{name}\")"
                        f"(jax.random.split({scope.subkey()}, {first.samples})))", "draws")
    else:
        out = scope.tmp(f"{name}({scope.subkey()})", "drawn")
    return [f"{out}[{i}]" for i in range(len(group))]


def _same_everywhere(em: Emitter, node: ir.Node, views: list[Fn]) -> bool:
    """Does `node` have one value in every view: no parameters, no randomness, the names it
    reads bound to the same values?"""
    if depends_on(node, em.program) or needs_key(node):
        return False
    return all(len({view.env.get(n) for view in views}) == 1 for n in ir.free_names(node))


def _draw(em: Emitter, name: str, dist: ir.Dist, key: str, scope: Fn, views: list[Fn]) -> None:
    """Bind `name` ~ dist in every view: one draw when the distribution is the same in all,
    else one per view from the same key."""
    hint = ident(name) + "_"
    if _same_everywhere(em, dist, views):
        value = scope.tmp(dist_sample(em, dist, key, views[0]), hint)
        for view in views:
            view.env[name] = value
    else:
        for view in views:
            view.env[name] = view.tmp(dist_sample(em, dist, key, view), hint)


def _draw_block(em: Emitter, sample: ir.Sample, scope: Fn, views: list[Fn]) -> None:
    """Ancestral sampling of a block in every view, lines that are the same everywhere once."""
    block = em.program.decl(sample.model)
    for line in block.lines:
        if line.name in sample.given and all(line.name in view.env for view in views):
            continue
        if isinstance(line, ir.Tilde):
            _draw(em, line.name, line.dist, scope.tmp(scope.subkey(), "k"), scope, views)
        elif _same_everywhere(em, line.value, views):
            value = scope.tmp(em.lower(line.value, views[0]), ident(line.name) + "_")
            for view in views:
                view.env[line.name] = value
        else:
            for view in views:
                view.env[line.name] = view.tmp(em.lower(line.value, view), ident(line.name) + "_")


def joint_function(em: Emitter, players: list[ir.Player]) -> list[str]:
    """`def joint_losses(ctx, key, batch)`: every player's loss, player p reading `ctx[p]`."""
    scope = Fn(em, 1, {}, "key")
    views = []
    for pl in players:
        params = em.fresh("params")
        scope.emit(f"{params} = ctx[{key_literal(pl.name)}]")
        views.append(scope.view(params=params))
    values = lower_together(em, [(view, pl.loss) for view, pl in zip(views, players)])
    doc = "Every player's loss, player p reading the parameters ctx[p]; shared draws are made once."
    result = "{" + ", ".join(f"{key_literal(pl.name)}: {v}" for pl, v in zip(players, values)) + "}"
    scope.emit(f"return {result}")
    return ["def joint_losses(ctx, key, batch):", f'    """{doc}"""'] + scope.body()
