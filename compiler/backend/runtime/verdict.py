"""The verdict every run ends with (SPEC section 9.2): `converged` and `warnings`, from the run's
history (each entry: the step reached and every player's loss averaged over the steps since the
entry before) and what the summary measures at the final parameters.

- Any loss or reported value that is NaN or infinite: not converged, the first such quantity named.
- A deterministic full-batch problem: converged when the objective's change between the last two
  entries of the history, relative to max(|f|, 1) (an objective whose optimum is 0 is judged by
  its absolute change, as the mapping below is against 1 + |f|), is under the tolerance and the
  (proximal-)gradient mapping G = (x - prox(x - eta grad f)) / eta is small against the objective's scale
  (|G| <= sqrt(tolerance) (1 + |f|)): a fixed point of the update the run takes.
- A stochastic problem (draws, minibatches): converged when the objective's change across the last
  fifth of the run, by a least-squares line through its history entries, is not movement, nor the
  step of its mean from the fifth before it: movement is a change beyond twice its standard error
  (a trend larger than the noise) and beyond TAIL_CHANGE (1 + |f|) (a change large enough to
  matter: a long run resolves ever smaller ones); a last fifth of fewer than MIN_TAIL entries is
  too short to judge, so not converged.
  One player whose parameters at the start of the last fifth were kept is judged instead by the
  objective evaluated there and at the end with the same draws (common random numbers, many keys:
  far less noisy than the history's one-draw losses): not converged when that change is movement.
  A slow descent under heavy per-step noise, which the trend test cannot resolve, is seen.
- A game: each player's loss flat by the same test; the field at the returned (averaged)
  parameters at most FIELD_SHRINK of its norm at the start (a field that does not shrink is a
  game that has not settled), no player's own part of it larger than at the start (a stalled
  player); and each critic (a maximising player) at its best response to the others: more
  steps of the critic alone, the others held fixed, raise its objective by no more than
  GAP_TOLERANCE (1 + |f|) and three standard errors. The Bayes-optimal critic of a divergence
  (D* = p/(p + q) for JS) is the best response, so a critic that still gains is not at it and
  the plug-in divergence is low by at least the gain. A game whose field has no randomness (no
  draws, no minibatches: `exact_field`) must moreover end at a zero of it, |v| <= sqrt(tolerance)
  (1 + |f|), as a single player's gradient mapping must.

Only numpy and the standard library: this module is copied into emitted modules.
"""
import math

import numpy as np

FLOOR = 1e-12          # |f| below this counts as 0 when a relative change is taken
FLOAT32_CHANGE = 4 * float(np.finfo(np.float32).eps)   # relative changes below this are rounding
SCALE_FLOOR = 1e-6     # a stochastic objective this close to 0 is judged on this scale: its terms' float32
                       # rounding, not its own, bounds what a trend can resolve (a divergence at its 0)
TAIL = 5               # the last 1/TAIL of the run is where a stochastic objective must be flat
MIN_TAIL = 16          # history entries the last fifth needs before its trend can be judged (runs of >= 80 steps)
HISTORY_POINTS = 100   # a run of N steps records at least min(N, HISTORY_POINTS) history entries
FIELD_SHRINK = 0.5     # a game's field at the returned parameters must be at most this fraction of its start
GAP_TOLERANCE = 1e-2   # a critic's best response may raise its objective by at most this, relative to 1 + |f|
TAIL_CHANGE = 1e-2     # a stochastic objective may change by at most this (relative to 1 + |f|) over the last fifth


def nonfinite(values):
    """The names of the entries of `values` (a dict of numbers) that are NaN or infinite."""
    return [k for k, v in values.items() if isinstance(v, (int, float)) and not math.isfinite(v)]


def first_nonfinite(history, players):
    """(step, player) of the first history entry whose loss is NaN or infinite, else None."""
    for entry in history:
        for p in players:
            if p in entry and not math.isfinite(entry[p]):
                return entry["step"], p
    return None


def relative_change(history, name, floor=FLOOR):
    """|f_k - f_(k-1)| / max(|f_k|, floor) between the last two entries of the history."""
    if len(history) < 2:
        return math.inf
    a, b = history[-2][name], history[-1][name]
    return abs(b - a) / max(abs(b), floor)


def rounding(history):
    """The relative change float32 rounding alone makes between two history entries: each is a
    float32 sum of its interval's losses, whose rounding grows like the square root of its length."""
    lengths = [b["step"] - a["step"] for a, b in zip([{"step": 0}] + history[:-1], history)][-2:]
    return FLOAT32_CHANGE * math.sqrt(max(lengths + [1]))


def settled(history, name, tolerance):
    """Has the objective changed by at most `tolerance` of its value over the last tenth of the
    steps (and the last entry)? A stop rule for a run to tolerance: one short interval of
    float32 stagnation is not enough."""
    if len(history) < 2:
        return False
    last = history[-1]
    earlier = [e for e in history if e["step"] <= 0.9 * last["step"]]
    if not earlier:
        return False
    scale, tolerance = max(abs(last[name]), FLOOR), max(tolerance, rounding(history))
    return (abs(last[name] - earlier[-1][name]) / scale <= tolerance
            and relative_change(history, name) <= tolerance)


def tail_trend(history, name):
    """(change of the objective across the last fifth of the run by a least-squares line through
    its history entries, the standard error of that change); None when the last fifth holds fewer
    than MIN_TAIL entries, too few for a standard error to mean anything. The line uses every entry,
    so a steady descent under heavy noise is still seen (two half-means see it less well)."""
    if not history:
        return None
    last = history[-1]["step"]
    tail = [(e["step"], e[name]) for e in history if e["step"] > last - last / TAIL]
    if len(tail) < MIN_TAIL:
        return None
    steps, values = (np.asarray(v, np.float64) for v in zip(*tail))
    centred = steps - steps.mean()
    slope = float(np.dot(centred, values - values.mean()) / np.dot(centred, centred))
    residual = values - values.mean() - slope * centred
    slope_stderr = math.sqrt(float(np.dot(residual, residual)) / (len(tail) - 2) / float(np.dot(centred, centred)))
    span = float(steps[-1] - steps[0])
    return slope * span, slope_stderr * span


def fifth_step(history, name):
    """(mean of the last fifth of the run minus the mean of the fifth before it, the standard
    error of that difference, entries taken as independent); None when either holds fewer than
    MIN_TAIL entries. A run still descending shows it here even when the noise within the last
    fifth hides its slope."""
    if not history:
        return None
    last = history[-1]["step"]
    fifth = last / TAIL
    later = np.asarray([e[name] for e in history if e["step"] > last - fifth], np.float64)
    earlier = np.asarray([e[name] for e in history if last - 2 * fifth < e["step"] <= last - fifth], np.float64)
    if len(later) < MIN_TAIL or len(earlier) < MIN_TAIL:
        return None
    stderr = math.sqrt(later.var(ddof=1) / len(later) + earlier.var(ddof=1) / len(earlier))
    return float(later.mean() - earlier.mean()), stderr


def is_movement(diff, stderr, value):
    """Is a change `diff` of an objective of value `value` movement: beyond twice its standard
    error and float32 rounding (not noise), and beyond TAIL_CHANGE (1 + |value|) (not a change too
    small to matter, which a long run resolves with ever smaller standard errors)?"""
    return abs(diff) > 2 * stderr + FLOAT32_CHANGE * max(abs(value), SCALE_FLOOR) \
        and abs(diff) > TAIL_CHANGE * (1 + abs(value))


def flat(history, name):
    """(is the objective flat over the last fifth of the run, a warning when it is not): no trend
    across the last fifth and no step from the fifth before it that is movement (`is_movement`)."""
    trend = tail_trend(history, name)
    if trend is None:
        return False, f"{name}: too few history points in the last fifth of the run to judge convergence"
    for (diff, stderr), where in ((trend, "across the last fifth of the run"),
                                  (fifth_step(history, name), "from the fifth of the run before the last")):
        if is_movement(diff, stderr, history[-1][name]):
            return False, (f"{name}: still moving: the objective changed by {diff:+.3g} {where} "
                           f"(standard error {stderr:.2g}): more steps or a smaller step size")
    return True, None


def verdict(history, players, moving, deterministic, tolerance, objective, reports, mapping=None,
            field_start=None, field_end=None, gaps=None, exact_field=False, change=None):
    """(converged, warnings) of a run; see the module docstring for the criteria. `players`: every
    player's name, the first the objective's; `moving`: those with parameters; `mapping`: the
    norm of the (proximal-)gradient mapping at the end (deterministic problems); `field_start`,
    `field_end`: each moving player's part of the field, its norm at the start and at the returned
    parameters (games); `gaps`: each critic's (gain of its best response, standard error);
    `change`: (change of the objective over the last fifth with the same draws at both ends, its
    standard error), for one stochastic player."""
    warnings = []
    bad = first_nonfinite(history, players)
    if bad is not None:
        warnings.append(f"the loss of player {bad[1]} is not finite (NaN or infinity) at step {bad[0]}: "
                        "the run diverged (a smaller step size, or a bounded parameterisation)")
    for name in nonfinite({"objective": objective, **{f"report {k}": v for k, v in reports.items()}}):
        warnings.append(f"{name} is not finite (NaN or infinity) at the final parameters")
    if warnings:
        return False, warnings
    if not moving:
        return True, []     # nothing is trained: the value is the objective evaluated (its stderr says how well)
    if not history:
        return False, ["no step was taken: nothing says the parameters are optimal"]
    main = players[0]
    if deterministic:
        change = relative_change(history, main, floor=1.0)   # relative above 1, absolute below: an optimum of 0
        tol = max(tolerance, rounding(history))
        converged = change <= tol
        if not converged:
            warnings.append(f"the objective still changes by {change:.2g} of its value (tolerance {tol:.2g}): "
                            "more steps (or no `steps`, to run to tolerance)")
        if mapping is not None and mapping > math.sqrt(tol) * (1 + abs(objective)):
            converged = False
            warnings.append(f"the (proximal-)gradient mapping has norm {mapping:.3g} at the end: not a fixed point "
                            "of the update, so not an optimum")
        return converged, warnings
    converged = True
    # a game whose field has no randomness is judged by the zero of its field (game_verdict), not by
    # a trend in its players' losses: a multiplier's loss near 0 moves by float32 rounding of its terms
    # one player with both ends of its last fifth evaluated (`change`) is judged by that paired
    # difference, which is both more sensitive and held to a relative size; otherwise by the trend
    if len(moving) > 1:
        trended = [] if exact_field else moving
    else:
        trended = [] if change is not None else [main]
    for p in trended:
        ok, warning = flat(history, p)
        converged &= ok
        if warning:
            warnings.append(warning)
    if change is not None and len(moving) == 1:
        diff, stderr = change     # tail_change's (difference, standard error)
        if is_movement(diff, stderr, objective):
            converged = False
            warnings.append(f"{main}: still moving: evaluated with the same draws at both ends, the objective changed "
                            f"by {diff:+.3g} over the last fifth of the run (standard error {stderr:.2g}), more than "
                            f"{TAIL_CHANGE:g} of 1 + |f|: the run has not settled (more steps; a smaller step size if "
                            "it got worse)")
    if len(moving) > 1 and field_start and field_end:
        game_ok, game_warnings = game_verdict(field_start, field_end, gaps or {}, objective,
                                              tolerance if exact_field else None)
        converged &= game_ok
        warnings += game_warnings
    return converged, warnings


def game_verdict(field_start, field_end, gaps, objective, exact_tolerance=None):
    """(settled, warnings) of a game from its players' parts of the field at the start and at the
    returned parameters, and its critics' best-response gains (module docstring). With
    `exact_tolerance` (a field with no randomness) the equilibria are exact zeros of the field v,
    so, as for a single player's gradient mapping, |v| <= sqrt(tolerance) (1 + |f|) is asked: a game
    circling its equilibrium changes its value slowly, and a field that merely shrank has not
    settled."""
    warnings = []
    norm = lambda parts: math.sqrt(sum(v * v for v in parts.values()))
    start, end = norm(field_start), norm(field_end)
    if exact_tolerance is not None:
        if not end <= math.sqrt(exact_tolerance) * (1 + abs(objective)):
            warnings.append(f"the field has norm {end:.3g} at the returned parameters ({start:.3g} at the start): "
                            "not a zero of it, so not an equilibrium of the game (more steps, a larger step "
                            "size, or dynamics that damp rotation)")
    elif not end <= FIELD_SHRINK * start:
        warnings.append(f"the field does not shrink: |v| = {end:.3g} at the returned (averaged) parameters, "
                        f"{start:.3g} at the start; the game has not settled")
    for p in field_end:
        if field_start.get(p, 0.0) > 0 and not field_end[p] < field_start[p]:
            warnings.append(f"player {p} stalled: its part of the field has norm {field_end[p]:.3g} at the end, "
                            f"{field_start[p]:.3g} at the start (its gradient did not shrink)")
    for p, (gain, stderr) in gaps.items():
        if gain > max(3 * stderr, GAP_TOLERANCE * (1 + abs(objective))):
            warnings.append(f"critic {p} is not at its Bayes-optimal value: more steps of {p} alone, the other players "
                            f"held fixed, raise its objective by {gain:.3g} (standard error {stderr:.2g}), so the "
                            "plug-in divergence is low by at least that and the game has not settled")
    return not warnings, warnings


def json_safe(value):
    """`value` with every NaN or infinity written as None, so that json.dumps gives valid JSON."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value
