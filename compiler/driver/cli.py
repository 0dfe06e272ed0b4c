"""The command line: compile, run, check, explain, field."""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from pathlib import Path

from compiler import ir
from compiler.driver.api import CompiledProgram, compile_file
from compiler.driver.files import output_path, write_atomically
from compiler.driver.rank import search_options
from compiler.ir.builtins import DYNAMICS
from compiler.ir.diagnostics import AttractorError

MAX_STEPS = 2**31 - 1   # steps are an int32 on the device
MAX_SEED = 2**32 - 1    # jax.random.PRNGKey takes a 32-bit seed
MAX_EVAL_BATCH = 2**31 - 1
EVAL_BATCH_HELP = ("evaluate the objective, the objective as written and the reports over the data in batches of N "
                   "examples (exact over every batch, up to 100 batches; beyond, a named estimate from a sample of "
                   "batches with its standard error); default: one pass up to 100,000 examples")


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's diagnostics: `attractor: error: ...` and exit code 1."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    ap = _ArgumentParser(
        prog="attractor", description="A compiler for machine-learning objectives.",
        epilog="Paths on the command line (--data, --params, --save, -o, --checkpoint) are relative to the working "
               "directory; paths inside a program (from npz(\"...\"), python(\"nets.py:f\")) to the program's folder.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)
    program = "the program (.att file)"
    via = "force a rule at the objective, e.g. 'jensen(iwae=8)'"
    data = "rebind the data to a source, e.g. 'npz(\"file.npz\")' (paths relative to the working directory)"
    seed = "the random seed (a whole number; default 0)"

    c = sub.add_parser("compile", help="parse, rewrite and print or emit a program")
    c.add_argument("file", help=program)
    c.add_argument("--show", choices=("ir", "derivation", "field"), default="derivation",
                   help="what to print: the rewritten IR, the derivation (default) or the vector field")
    c.add_argument("--format", choices=("text", "json", "latex"), default="text", help="how to print it")
    c.add_argument("--emit", choices=("jax",), help="write the standalone JAX module instead")
    c.add_argument("-o", "--output", help="the file --emit writes (default: standard output)")
    c.add_argument("--via", help=via)

    r = sub.add_parser("run", help="compile and train; print the result")
    r.add_argument("file", help=program)
    r.add_argument("--steps", help="the number of steps (default: the train line's, or to tolerance)")
    r.add_argument("--seed", default="0", help=seed)
    r.add_argument("--data", help=data)
    r.add_argument("--dynamics", choices=DYNAMICS, help="the training dynamics (default: the train line's)")
    r.add_argument("--via", help=via)
    r.add_argument("--json", action="store_true", help="print the result as one JSON object")
    r.add_argument("--plot", help="draw the history and the reports into this image file")
    r.add_argument("--samples", help="save 2000 draws of the trained sampler to this .npy file")
    r.add_argument("--force", action="store_true", help="run even where the memory estimate exceeds this machine's")
    r.add_argument("--save", metavar="PARAMS.npz", help="save the trained parameters, one array per leaf ('decoder/0/w')")
    r.add_argument("--checkpoint", metavar="DIR", help="keep the whole training state in DIR/checkpoint.npz")
    r.add_argument("--every", metavar="SECONDS", default="60",
                   help="write the checkpoint at most this often (default 60; and at the end of the run)")
    r.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --checkpoint DIR (ends as an uninterrupted run would)")

    r.add_argument("--eval-batch", metavar="N", help=EVAL_BATCH_HELP)
    v = sub.add_parser("eval", help="evaluate saved parameters: objective and reports, no training")
    v.add_argument("--eval-batch", metavar="N", help=EVAL_BATCH_HELP)
    v.add_argument("file", help=program)
    v.add_argument("--params", required=True, metavar="PARAMS.npz", help="parameters saved by run --save")
    v.add_argument("--data", help=data)
    v.add_argument("--seed", default="0", help=seed)
    v.add_argument("--via", help=via)
    v.add_argument("--json", action="store_true", help="print the result as one JSON object")

    s = sub.add_parser("sample", help="draw from a model, a sampler or a guide at saved parameters")
    s.add_argument("file", help=program)
    s.add_argument("--params", required=True, metavar="PARAMS.npz", help="parameters saved by run --save")
    s.add_argument("-n", required=True, metavar="N", help="the number of draws (a guide: one per example, at most N)")
    s.add_argument("-o", "--output", required=True, metavar="OUT.npy", help="the .npy file the draws go to")
    s.add_argument("--of", metavar="NAME", help="the model, sampler or guide to draw from (default: the program's "
                   "sampler); a model or sampler gives its data variables, a guide its latents for each example of the data")
    s.add_argument("--data", help=data + "; the examples a guide is applied to")
    s.add_argument("--seed", default="0", help=seed)
    s.add_argument("--via", help=via)

    k = sub.add_parser("check", help="numerical certificates of every recorded relation")
    k.add_argument("file", help=program)
    k.add_argument("--seed", default="0", help=seed)
    k.add_argument("--via", help=via)
    k.add_argument("--force", action="store_true", help="check even where the memory estimate exceeds this machine's")

    e = sub.add_parser("explain", help="the rules that match, and the alternatives not taken")
    e.add_argument("file", help=program)
    e.add_argument("--rank", action="store_true",
                   help="measure every derivation of each node (gradient variance, ms per step) and mark the one chosen")
    e.add_argument("--json", action="store_true", help="with --rank: the table as JSON")

    f = sub.add_parser("field", help="Jacobian eigenvalues of the vector field")
    f.add_argument("file", help=program)
    f.add_argument("--at", default="init", help="init, final, or name=value,... for scalar parameters")
    f.add_argument("--steps", help="the steps trained before --at final (default: the train line's)")
    f.add_argument("--seed", default="0", help=seed)
    f.add_argument("--dynamics", choices=DYNAMICS, help="the dynamics whose field is analysed")
    f.add_argument("--plot", help="draw the eigenvalues into this image file")
    f.add_argument("--force", action="store_true", help="analyse even where the memory estimate exceeds this machine's")
    for command in (c, r, v, s, k, e, f):
        command.add_argument("--no-search", action="store_true",
                             help="take the first derivation that applies (rule order) instead of measuring the alternatives "
                                  "of each node (with explain --rank every alternative is still measured)")
    for command in (c, r, v, s, k, e, f):
        command.add_argument("--search-budget", metavar="S", default=None,
                             help="seconds the search among derivations may spend measuring (default 10)")
    return ap


def _whole_number(args, option: str, low: int, high: int) -> None:
    """`--steps` / `--seed`: a whole number in [low, high], checked before anything runs."""
    attr = option.lstrip("-").replace("-", "_")
    text = getattr(args, attr, None)
    if text is None:
        return
    try:
        value = int(str(text).strip(), 10)
    except ValueError:
        raise AttractorError(f"{option} must be a whole number, got {text!r}", None, option) from None
    if not low <= value <= high:
        raise AttractorError(f"{option} must be from {low} to {high}, got {value}", None, option)
    setattr(args, attr, value)


def _compile(args) -> CompiledProgram:
    return compile_file(args.file, via=getattr(args, "via", None), dynamics=getattr(args, "dynamics", None),
                        **search_options(args))


def cmd_compile(args) -> int:
    out = output_path(args.output, "-o", args.file) if args.output else None
    prog = _compile(args)
    if args.emit:
        source = prog.emit()
        if out is not None:
            write_atomically(out, "-o", lambda tmp: tmp.write_text(source))
        else:
            sys.stdout.write(source)
        return 0
    if out is not None:
        raise AttractorError("-o writes the emitted module: use it with --emit jax", None, "-o")
    view = getattr(prog, args.show)   # only the view asked for is made
    if args.format == "json":
        print(view.to_json())
    elif args.format == "latex":
        print(view.to_latex())
    else:
        print(view)
    return 0


class ProgressBar:
    """A one-line progress bar on stderr with the current losses and reports."""

    def __init__(self, mod, data, enabled: bool):
        self.mod, self.data, self.enabled = mod, data, enabled
        self.last = 0.0

    def __call__(self, done, total, record, params):
        if not self.enabled:
            return
        now = time.perf_counter()
        if done < total and now - self.last < 0.2:
            return
        self.last = now
        text = " ".join(f"{k}={v:.4g}" for k, v in record.items())
        if self.mod.REPORTS and (done >= total or done % max(1, total // 10) < 100):
            import jax
            reps = self.mod.reports(params, jax.random.PRNGKey(0), self.data)
            text += " | " + " ".join(f"{k}={v:.4g}" for k, v in reps.items())
        width = 28
        filled = int(width * done / max(total, 1))
        sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}\033[K")
        if done >= total:
            sys.stderr.write("\n")
        sys.stderr.flush()


def cmd_run(args) -> int:
    samples = output_path(args.samples, "--samples", args.file) if args.samples else None
    plot = output_path(args.plot, "--plot", args.file) if args.plot else None
    save = output_path(args.save, "--save", args.file) if args.save else None
    if args.resume and not args.checkpoint:
        raise AttractorError("--resume continues from a checkpoint: give its folder with --checkpoint DIR", None, "--resume")
    every = _seconds(args.every, "--every")
    from compiler.driver.api import parse_source
    from compiler.driver.resources import check_memory
    override = parse_source(args.data) if args.data else None
    prog = _compile(args)
    if not args.json:
        print(prog.derivation_text(), file=sys.stderr)
    check_memory(prog, override, args.force)
    data = prog.load_data(args.data)
    mod = prog.build()
    steps = args.steps if args.steps is not None else mod.STEPS
    if steps < 0:
        raise AttractorError("--steps must be non-negative", None, "--steps")
    bar = ProgressBar(mod, data, enabled=not args.json)
    report_history: list[dict] = []

    def callback(done, total, record, params):
        bar(done, total, record, params)
        if args.plot and mod.REPORTS and (done >= total or done % max(1, total // 40) < max(1, total // 100)):
            import jax
            report_history.append({"step": done, **mod.reports(params, jax.random.PRNGKey(0), data)})

    checkpoints = _checkpoints(args, prog, every)
    resume = checkpoints.resume if checkpoints is not None and args.resume and checkpoints.exists() else None
    params, history = mod.fit(data, args.steps, args.seed, callback=callback,   # steps None: the program's default
                              checkpoint=checkpoints, resume=resume)
    if checkpoints is not None:
        checkpoints.finish(history)
    if save is not None:
        from compiler.driver.workflow import save_params
        save_params(save, params)
    seconds, compile_seconds = (history[-1]["seconds"], history[-1]["compile_seconds"]) if history else (0.0, None)
    result = mod.summary(params, data, steps, seconds, args.seed, compile_seconds, history, args.eval_batch)
    from compiler.driver.tails import judge
    result = judge(prog, mod, params, data, result, args.seed)   # an estimator of infinite variance (issue 17)
    from compiler.driver.field import judge_stability
    result = judge_stability(prog, mod, params, data, result, args.seed)   # stalled at a saddle or a maximum
    result["search_seconds"] = prog.ranking.seconds if prog.ranking is not None else 0.0   # measuring derivations (SPEC 9.4)
    if samples is not None:
        _save_samples(mod, params, samples, args.seed)
    if plot is not None:
        from compiler.driver.plot import plot_run
        write_atomically(plot, "--plot", lambda tmp: plot_run(str(tmp), history, report_history, mod, params, data))
    if args.json:
        print(json.dumps(mod.json_safe(result)))
    else:
        print(value_text(result) + (f"   estimate {result['estimate']:.6g}" if result["estimate"] is not None else ""))
        for k, v in result["reports"].items():
            print(f"report {k} = {v:.6g}")
        print(f"{result['steps']} steps, {result['seconds_per_step'] * 1e3:.3f} ms/step, "
              f"{'converged' if result['converged'] else 'not converged'}")
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    return 3 if diverged(result, history, mod.PLAYERS) else 0


def _seconds(text: str, option: str) -> float:
    """A positive number of seconds (`--every`)."""
    try:
        value = float(text)
    except ValueError:
        raise AttractorError(f"{option} must be a number of seconds, got {text!r}", None, option) from None
    if not value > 0 or value == float("inf"):
        raise AttractorError(f"{option} must be a positive number of seconds, got {text}", None, option)
    return value


def _checkpoints(args, prog, every):
    """The run's checkpoints (`--checkpoint DIR`), or None; checked against this run before training."""
    if not args.checkpoint:
        return None
    from compiler.driver.workflow import Checkpoints, run_identity
    checkpoints = Checkpoints(args.checkpoint, every, run_identity(prog, args.dynamics or prog.dynamics, args.seed,
                                                                    args.steps))
    checkpoints.check_folder()
    if args.resume and not checkpoints.exists():
        print(f"note: no checkpoint in {checkpoints.path.resolve()}: starting from step 0", file=sys.stderr)
    if not args.resume and checkpoints.exists():
        raise AttractorError(f"{checkpoints.path.resolve()} exists: continue it with --resume, or remove it",
                             None, "--checkpoint")
    return checkpoints


def diverged(result: dict, history: list[dict], players) -> bool:
    """A NaN or an infinity in the objective, a report, or a player's loss along the way (exit code 3)."""
    import math
    values = [result["objective"], *result["reports"].values(), *(h[p] for h in history for p in players if p in h)]
    return not all(math.isfinite(v) for v in values)


def _save_samples(mod, params, path, seed) -> None:
    import jax
    import numpy as np
    if not hasattr(mod, "sample"):
        raise AttractorError("--samples needs a sampler in the program", None, "--samples")
    draws = np.asarray(mod.sample(params, jax.random.PRNGKey(seed + 2), 2000))
    if path.suffix != ".npy":   # np.save's own convention
        path = path.with_name(path.name + ".npy")

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.save(handle, draws)
    write_atomically(path, "--samples", write)


def cmd_eval(args) -> int:
    """The objective and the reports at saved parameters, as `run` prints them, with no training."""
    from compiler.driver.workflow import load_params
    prog = _compile(args)
    data = prog.load_data(args.data)
    mod = prog.build()
    params = load_params(args.params, mod)
    result = mod.summary(params, data, 0, 0.0, args.seed, None, [], args.eval_batch, judged=False)
    from compiler.driver.tails import judge
    result = judge(prog, mod, params, data, result, args.seed)   # an estimator of infinite variance (issue 17)
    training = ("steps", "seconds_per_step", "compile_seconds", "converged")   # the verdict of a run: none here
    result = {k: v for k, v in result.items() if k not in training}
    result["warnings"] += [f"{name} is not finite (NaN or infinity) at these parameters" for name, v in
                           [("objective", result["objective"]), *(("report " + k, v) for k, v in result["reports"].items())]
                           if v is not None and not math.isfinite(v)]
    if args.json:
        print(json.dumps(mod.json_safe(result)))
    else:
        print(value_text(result))
        for k, v in result["reports"].items():
            print(f"report {k} = {v:.6g}")
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    return 3 if diverged(result, [], mod.PLAYERS) else 0


def value_text(result: dict) -> str:
    """`objective V (+- SE)   as written A (+- SE, estimator)`: the compiled objective and the
    objective as the user wrote it (SPEC section 9.2), each with its standard error where it draws."""
    def with_error(value, stderr):
        if value is None or not math.isfinite(value):
            return "null" if value is None else str(value)
        return f"{value:.6g}" + (f" +- {stderr:.2g}" if stderr else "")
    text = "objective " + with_error(result["objective"], result.get("objective_stderr"))
    if "as_written" in result:
        text += "   as written " + with_error(result["as_written"], result.get("as_written_stderr"))
        if result.get("as_written_estimator"):
            text += f" ({result['as_written_estimator']})"
    return text


def cmd_sample(args) -> int:
    """`-n` draws at saved parameters, into a .npy file: of the program's sampler (no `--of`), or
    `--of NAME`: a model or a sampler (its data variables, by ancestral sampling) or a guide (its
    latents, applied to the first n examples of the data: one draw per example). Several variables
    are flattened and joined, in the block's order, one row per draw."""
    import jax
    import numpy as np

    from compiler.driver.workflow import block_draws, load_params
    out = output_path(args.output, "-o", args.file)
    _whole_number(args, "-n", 1, 10**8)
    prog = _compile(args)
    if args.of is None:
        samplers = [b.name for b in prog.program.of_type(ir.Block) if b.kind == "sampler"]
        if not samplers:
            raise AttractorError("the program has no sampler to draw from; name a model or a guide with --of", None, "--of")
        mod = prog.build()
        params = load_params(args.params, mod)
        draws, what = np.asarray(mod.sample(params, jax.random.PRNGKey(args.seed), args.n)), samplers[0]
    else:
        draws, what = block_draws(prog, args.of, args.params, args.data, args.n, args.seed)

    def write(tmp):
        with open(tmp, "wb") as handle:
            np.save(handle, draws)
    write_atomically(out, "-o", write)
    print(f"{draws.shape[0]} draws of {what}, shape {draws.shape[1:]}, written to {out}", file=sys.stderr)
    return 0


def cmd_check(args) -> int:
    from compiler.driver.check import certify
    from compiler.driver.resources import check_memory
    prog = _compile(args)
    check_memory(prog, None, args.force, "check")
    results = certify(prog, seed=args.seed)
    failed = 0
    for r in results:
        mark = "ok  " if r.passed else "FAIL"
        failed += not r.passed
        print(f"{mark} {r.rule}: {r.claim}\n     {r.evidence}")
    if not results:
        print("nothing to certify: the program has no rewrite")
    print(f"{len(results) - failed} passed, {failed} failed")
    return 1 if failed else 0


def cmd_explain(args) -> int:
    from compiler.driver.explain import explain, explain_rank
    compile_file_text(args.file)
    if args.json and not args.rank:
        raise AttractorError("--json prints the table of --rank: use them together", None, "--json")
    if args.rank:
        print(explain_rank(args.file, json=args.json, **search_options(args)))
    else:
        print(explain(args.file, **search_options(args)))
    return 0


def cmd_field(args) -> int:
    from compiler.driver.field import field_command
    print(field_command(args))
    return 0


def compile_file_text(path: str) -> str:
    """The text of a program file, or the diagnostic compile_file gives (missing, a folder, not UTF-8)."""
    try:
        return Path(path).read_text()
    except OSError as e:
        raise AttractorError(f"cannot read file {Path(path).resolve()}: {e.strerror}", None, str(path)) from None
    except UnicodeDecodeError:
        raise AttractorError("the file is not UTF-8 text", None, str(path)) from None


COMMANDS = {"compile": cmd_compile, "run": cmd_run, "eval": cmd_eval, "sample": cmd_sample, "check": cmd_check,
            "explain": cmd_explain, "field": cmd_field}


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):   # an ASCII-only terminal gets escapes, not a UnicodeEncodeError
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    try:
        _whole_number(args, "--steps", 0, MAX_STEPS)
        _whole_number(args, "--seed", 0, MAX_SEED)
        _whole_number(args, "--eval-batch", 1, MAX_EVAL_BATCH)
        if getattr(args, "plot", None) and args.command == "field":
            output_path(args.plot, "--plot", args.file)
        return COMMANDS[args.command](args)
    except AttractorError as e:
        print(str(e), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:   # the reader went away (`| head`): stop quietly
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:  # an internal error: say so plainly, trace only on request
        if os.environ.get("ATTRACTOR_DEBUG"):
            traceback.print_exc()
        print(f"attractor: internal error: {type(e).__name__}: {e} (set ATTRACTOR_DEBUG=1 for a trace)", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
