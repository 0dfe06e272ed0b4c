"""Training defaults: what the emitted module trains with where the `train` line is silent.

The choice follows the shape of the problem, never its name:
- an optimizer written in the `train` line is used as written;
- one player (minimising or maximising) over declared parameters (no nets), with no
  randomness and no minibatches, is a deterministic full-batch problem: if its loss is smooth it is solved by
  (proximal) gradient descent with the step 1/L, L the largest eigenvalue of the Hessian at
  the initial point (power iteration, at run time, on the actual data); if it has kinks
  (hinge, absolute value), by Adam with a step decaying to zero (cosine), which converges
  on convex non-smooth problems where a constant step would oscillate;
- anything else (stochastic objectives, games, nets) by Adam with a constant step 1e-3.

Steps: `steps=N` in the `train` line is always honoured. Without it a deterministic full-batch
problem runs to tolerance (SPEC §9.2): until the relative change of the objective and the
(proximal-)gradient mapping norm are both under TOLERANCE, at most MAX_STEPS steps; anything
else runs DEFAULT_STEPS steps (its verdict judges whether that was enough).

Evaluation after training (objective, as_written, reports) is a runtime default, in
runtime/training.py (EXACT_DATA_LIMIT, EVALUATION_BATCH, EXACT_BATCHES, SAMPLED_BATCHES): the emitted
module carries it and imports nothing of the compiler. A data set of more than EXACT_DATA_LIMIT examples
is evaluated in batches, all of them (exact) up to EXACT_BATCHES, else a random sample of batches with
its standard error over batches, the estimator named in the run's JSON.
"""
from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from compiler import ir
from compiler.analysis.constants import const_value
from compiler.analysis.problems import depends_on
from compiler.ir.builtins import DISTRIBUTIONS, OPERATIONS

KINKED = {name for name, op in OPERATIONS.items() if op.kinked}
KINKED_FAMILIES = {name for name, family in DISTRIBUTIONS.items() if family.kinked}
_KINKED_SYMPY = (sp.Abs, sp.Max, sp.Min, sp.Heaviside, sp.Piecewise, sp.sign, sp.floor)
TOLERANCE = 1e-7         # relative, for a full-batch deterministic run with no `steps` written
MAX_STEPS = 100000       # the most steps such a run takes
DEFAULT_STEPS = 1000     # steps of any other run with no `steps` written
KINKED_STEPS = 20000     # a kinked full-batch run's fixed length (cosine decay needs one): at 2000 the hinge of
                         # svm_hinge.att was 6e-5 off its optimum and still moving; at 20000, 1.5e-6 (0.2 s)


@dataclass(frozen=True)
class Training:
    optimizer: tuple          # (name, ((key, value), ...))
    schedule: str             # constant | cosine
    steps: int
    lipschitz: bool           # step size 1/L, estimated from the data at the initial point
    reason: str
    backtrack: bool = False   # 1/L at the start may not hold later (loss not quadratic): halve on ascent
    tolerance: float | None = None   # stop once the relative change and the gradient mapping are under it


def deterministic_full_batch(program: ir.Program) -> bool:
    """One player over declared parameters only, no random draws, no minibatches."""
    from compiler.backend.lower import needs_key
    if len(program.players) != 1 or program.train.option("batch"):
        return False
    player = program.players[0]
    return (player.sense in ("min", "max") and not needs_key(player.loss)
            and all(isinstance(program.decl(p), ir.Param) for p in player.params)
            and not any(isinstance(n, ir.NetCall) for n in player.loss.walk()))


def exact_field(program: ir.Program) -> bool:
    """No player's loss draws and none is taken on minibatches: the field is a deterministic
    function of the parameters (its equilibria are exact zeros of it)."""
    from compiler.backend.lower import needs_key
    return not program.train.option("batch") and not any(needs_key(p.loss) for p in program.players)


def smooth(node: ir.Node, program: ir.Program) -> bool:
    """No kink in the parameters: no abs, max, norm1, ... (nor a SymPy closed form with one,
    nor a density whose block draws from a kinked family or has a kinked argument)."""
    for n in node.walk():
        if isinstance(n, (ir.Density, ir.Sample)) and depends_on(n, program):
            block = program.decl(n.model)
            if isinstance(block, ir.Block) and not all(_smooth_line(l, program) for l in block.lines):
                return False
        if isinstance(n, ir.Apply) and n.fn in KINKED and depends_on(n, program):
            return False
        if isinstance(n, ir.Compare) and depends_on(n, program):
            return False
        if isinstance(n, ir.Sym) and sp.sympify(n.expr).atoms(*_KINKED_SYMPY) and depends_on(n, program):
            return False
    return True


LINEAR = {name for name, op in OPERATIONS.items() if op.linear}
PRODUCTS = {"mul", "dot", "matmul"}
SQUARES = {"square", "sumsq"}


def degree(node: ir.Node, program: ir.Program) -> float:
    """The degree of `node` as a polynomial in the learnable parameters (inf: not a
    polynomial). Degree <= 2 means a constant Hessian, so 1/L at one point holds everywhere.
    One bottom-up pass: arithmetic combines its arguments' degrees; any other node is 0 when
    it does not depend on the parameters and inf when it does."""
    if isinstance(node, ir.Ref):
        return 1 if node.name in program.learnable() else 0
    if isinstance(node, ir.Num):
        return 0
    if isinstance(node, ir.Expect) and isinstance(node.source, ir.DataSet):
        return degree(node.body, program)
    if isinstance(node, ir.Let):
        inner = degree(node.body, program)
        return inner * max(1, degree(node.value, program)) if inner else 0
    if isinstance(node, ir.Apply):
        args = [degree(a, program) for a in node.args]
        if node.fn in LINEAR:
            return max(args)
        if node.fn in PRODUCTS:
            return sum(args)
        if node.fn in SQUARES:
            return 2 * args[0]
        if node.fn == "div" and args[1] == 0:
            return args[0]
        if node.fn == "pow" and args[1] == 0:
            k = const_value(node.args[1], program)
            return k * args[0] if k is not None and float(k).is_integer() and k >= 0 else float("inf")
        return 0 if not any(args) else float("inf")
    return float("inf") if depends_on(node, program) else 0


def _smooth_line(line: ir.Node, program: ir.Program) -> bool:
    value = line.dist if isinstance(line, ir.Tilde) else line.value
    if isinstance(value, ir.Dist) and value.family in KINKED_FAMILIES and depends_on(value, program):
        return False
    return smooth(value, program)


def training(program: ir.Program, loss: ir.Node | None = None) -> Training:
    """The optimizer, schedule, number of steps and step rule for `program` (whose first
    player's loss is `loss`, if given)."""
    t = program.train
    steps, schedule = t.option("steps"), t.option("schedule")
    if t.option("optimizer") is not None:
        return Training(t.option("optimizer"), schedule or "constant", steps or DEFAULT_STEPS, False, "as written")
    if not any(p.params for p in program.players):
        return Training(("adam", (("lr", 1e-3),)), schedule or "constant", steps or DEFAULT_STEPS, False,
                        "no parameters: the objective is only evaluated")
    if not deterministic_full_batch(program):
        return Training(("adam", (("lr", 1e-3),)), schedule or "constant", steps or DEFAULT_STEPS, False,
                        "stochastic, a game or a net: Adam with step 1e-3")
    loss = loss if loss is not None else program.players[0].loss
    tolerance = None if steps else TOLERANCE
    until = "" if steps else f", to relative tolerance {TOLERANCE:g} (at most {MAX_STEPS} steps)"
    if smooth(loss, program):
        if degree(loss, program) <= 2:
            return Training(("sgd", (("lr", 1.0),)), schedule or "constant", steps or MAX_STEPS, True,
                            "deterministic, full batch, quadratic: (proximal) gradient descent with step 1/L" + until,
                            tolerance=tolerance)
        return Training(("sgd", (("lr", 1.0),)), schedule or "constant", steps or MAX_STEPS, True,
                        "deterministic, full batch and smooth: (proximal) gradient descent with step 1/L, "
                        "L from the start, halved whenever a step would raise the objective" + until,
                        backtrack=True, tolerance=tolerance)
    # a step decaying to zero needs the run's length in advance: a fixed count, judged by the verdict
    return Training(("adam", (("lr", 0.1),)), schedule or "cosine", steps or KINKED_STEPS, False,
                    "deterministic, full batch, with kinks: Adam with a cosine-decaying step")


def plain_gradient(program: ir.Program, loss: ir.Node) -> bool:
    """Will the player be trained by plain gradient steps, the step a proximal map needs?"""
    tr = training(program, loss)
    name, kwargs = tr.optimizer
    return tr.lipschitz or name == "sgd" and not dict(kwargs).get("momentum") and not dict(kwargs).get("nesterov")
