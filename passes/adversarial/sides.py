"""The two sides of a divergence, as the game rules see them: which variables both produce,
whether each can be sampled and whether its law moves with the player's parameters, and the
expectation of a body over one side.

Draws from a sampler or model are paired with the data: `E[x ~ data] E[x ~ g] h(x)` takes one
draw of g per data example, so a minibatch sets the number of draws per step and the objective
on the whole data set averages as many draws as there are examples.
"""
from __future__ import annotations

from compiler import ir
from compiler.analysis.problems import depends_on
from compiler.ir.builtins import RESERVED
from compiler.ir.diagnostics import AttractorError
from compiler.ir.printer import show
from compiler.rewrite.rule import Context


def sum_of(*terms: ir.Node) -> ir.Node:
    """t1 + t2 + ..., a negated term written as a subtraction."""
    out = terms[0]
    for t in terms[1:]:
        negated = isinstance(t, ir.Apply) and t.fn == "neg"
        out = ir.Apply("sub", (out, t.args[0])) if negated else ir.Apply("add", (out, t))
    return out


def fresh_name(program: ir.Program, base: str) -> str:
    """`base`, or `base2`, `base3`, ...: a name no declaration, block line, data variable or player uses."""
    taken = set(RESERVED) | {p.name for p in program.players} | {n for n, _ in program.data_vars}
    for d in program.decls:
        taken.add(getattr(d, "name", ""))
        if isinstance(d, ir.Block):
            taken |= {line.name for line in d.lines}
    name, i = base, 1
    while name in taken:
        i += 1
        name = f"{base}{i}"
    return name


def side_name(side: ir.Node) -> str:
    return "data" if isinstance(side, ir.DataSet) else side.name


def shared_variables(program: ir.Program, node: ir.Divergence) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """The variables the divergence compares, and their shapes: the data variables both sides
    produce; in a program that declares no data, the outputs both blocks produce (a variable
    neither block reads in a later line: `x` of `eps ~ ...; x = f(eps)`, not its noise `eps`)
    that one of them draws with `~`, in the first block's order."""
    if program.data_vars or isinstance(node.p, ir.DataSet) or isinstance(node.q, ir.DataSet):
        def makes(side, v):
            return isinstance(side, ir.DataSet) or program.decl(side.name).line(v) is not None
        shared = tuple((v, s) for v, s in program.data_vars if makes(node.p, v) and makes(node.q, v))
        return tuple(v for v, _ in shared), tuple(s for _, s in shared)
    blocks = (program.decl(node.p.name), program.decl(node.q.name))
    read = {name for b in blocks for line in b.lines for name in ir.free_names(getattr(line, "dist", None)
                                                                               or getattr(line, "value", None))}
    binder, shapes = [], []
    for line in blocks[0].lines:
        if line.name in read or blocks[1].line(line.name) is None:
            continue
        drawn = next((b.line(line.name) for b in blocks if isinstance(b.line(line.name), ir.Tilde)), None)
        if drawn is None:
            raise AttractorError(f"{show(node)} compares '{line.name}', which both {blocks[0].name} and "
                                 f"{blocks[1].name} compute from other draws: declare it as data "
                                 f"(`data {line.name} : ...`) to say what is compared", node.loc)
        binder.append(line.name)
        shapes.append(tuple(drawn.shape or ()))
    return tuple(binder), tuple(shapes)


def check_sampleable(program: ir.Program, side: ir.Node, rule: str, divergence: ir.Divergence) -> None:
    """A side the game rules cannot draw from is a diagnostic at that side: a Gibbs
    (unnormalised) model, or a guide conditioned on other variables. No rule of the family can
    take such a divergence, so it is an error in the program, not a refusal of one rule."""
    if isinstance(side, ir.DataSet):
        return
    block = program.decl(side.name)
    gibbs = next((line for line in block.lines if isinstance(line, ir.Tilde) and line.dist.family == "Gibbs"), None)
    if gibbs is not None:
        raise AttractorError(
            f"{rule} needs samples of both sides of {show(divergence)}, but {block.kind} {block.name} is a "
            f"Gibbs (unnormalised) model, which cannot be sampled", side.loc or divergence.loc)
    if block.given:
        raise AttractorError(
            f"{rule} needs samples of both sides of {show(divergence)}, but guide {block.name} is conditioned "
            f"on {', '.join(block.given)}: it has no samples of its own", side.loc or divergence.loc)


def sampled_sides(node: ir.Divergence, ctx: Context, rule: str):
    """The shared variables and their shapes, after checking that both sides can be drawn from."""
    for side in (node.p, node.q):
        check_sampleable(ctx.program, side, rule, node)
    return shared_variables(ctx.program, node)


UNPAIRED_DRAWS = 256    # draws of a block per step where the program declares no data to pair them with


def expect_over(side: ir.Node, binder: tuple[str, ...], body, paired: bool = True) -> ir.Node:
    """E over one side of `body(kind)`: the data, or one draw of a block per data example
    (`paired`), or, in a program that declares no data, UNPAIRED_DRAWS draws of the block."""
    if isinstance(side, ir.DataSet):
        return ir.Expect(binder, ir.DataSet(), body("data"))
    if not paired:
        return ir.Expect(binder, ir.Sample(side.name, binder), body("latent"), samples=UNPAIRED_DRAWS)
    draw = ir.Expect(binder, ir.Sample(side.name, binder), body("latent"))
    return ir.Expect(binder, ir.DataSet(), draw)


def moves(side: ir.Node, binder, ctx: Context) -> bool:
    """Does this side's law depend on the parameters of the player whose loss holds it?"""
    if isinstance(side, ir.DataSet):
        return False
    return depends_on(ir.Sample(side.name, binder), ctx.program, set(ctx.player.params))


def pairing_note(node: ir.Divergence) -> str:
    """How the draws of the sampled sides are paired with the data ("" when both are data)."""
    blocks = [s.name for s in (node.p, node.q) if not isinstance(s, ir.DataSet)]
    return (f"draws of {' and '.join(blocks)} are paired with data examples "
            f"(E[x ~ data] E[x ~ {blocks[0]}]: one draw per example)" if blocks else "")
