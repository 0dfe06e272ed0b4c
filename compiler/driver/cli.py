"""The command line: compile, run, check, explain, field."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
import traceback
from pathlib import Path

from compiler.driver.api import CompiledProgram, compile_file
from compiler.ir.builtins import DYNAMICS
from compiler.ir.diagnostics import AttractorError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="attractor", description="A compiler for machine-learning objectives.")
    sub = ap.add_subparsers(dest="command", required=True)

    c = sub.add_parser("compile", help="parse, rewrite and print or emit a program")
    c.add_argument("file")
    c.add_argument("--show", choices=("ir", "derivation", "field"), default="derivation")
    c.add_argument("--format", choices=("text", "json", "latex"), default="text")
    c.add_argument("--emit", choices=("jax",))
    c.add_argument("-o", "--output")
    c.add_argument("--via", help="force a rule, e.g. 'jensen(iwae=8)'")

    r = sub.add_parser("run", help="compile and train; print the result")
    r.add_argument("file")
    r.add_argument("--steps", type=int)
    r.add_argument("--seed", type=int, default=0)
    r.add_argument("--data", help="rebind the data, e.g. 'npz(\"file.npz\")'")
    r.add_argument("--dynamics", choices=DYNAMICS)
    r.add_argument("--via")
    r.add_argument("--json", action="store_true")
    r.add_argument("--plot")
    r.add_argument("--samples")

    k = sub.add_parser("check", help="numerical certificates of every recorded relation")
    k.add_argument("file")
    k.add_argument("--seed", type=int, default=0)
    k.add_argument("--via")

    e = sub.add_parser("explain", help="the rules that match, and the alternatives not taken")
    e.add_argument("file")

    f = sub.add_parser("field", help="Jacobian eigenvalues of the vector field")
    f.add_argument("file")
    f.add_argument("--at", default="init", help="init, final, or name=value,... for scalar parameters")
    f.add_argument("--steps", type=int)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--dynamics", choices=DYNAMICS)
    f.add_argument("--plot")
    return ap


def _compile(args) -> CompiledProgram:
    return compile_file(args.file, via=getattr(args, "via", None), dynamics=getattr(args, "dynamics", None))


def cmd_compile(args) -> int:
    prog = _compile(args)
    if args.emit:
        source = prog.emit()
        if args.output:
            Path(args.output).write_text(source)
        else:
            sys.stdout.write(source)
        return 0
    view = {"ir": prog.ir, "derivation": prog.derivation, "field": prog.field}[args.show]
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
    prog = _compile(args)
    if not args.json:
        print(prog.derivation_text(), file=sys.stderr)
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

    started = time.perf_counter()
    params, history = mod.fit(data, steps, args.seed, callback=callback)
    seconds = time.perf_counter() - started
    result = mod.summary(params, data, steps, seconds, args.seed)
    if args.samples:
        _save_samples(mod, params, args.samples, args.seed)
    if args.plot:
        from compiler.driver.plot import plot_run
        plot_run(args.plot, history, report_history, mod, params, data)
    if args.json:
        print(json.dumps(result))
    else:
        print(f"objective {result['objective']:.6g}" + (f"   estimate {result['estimate']:.6g}" if result["estimate"] is not None else ""))
        for k, v in result["reports"].items():
            print(f"report {k} = {v:.6g}")
        print(f"{steps} steps, {result['seconds_per_step'] * 1e3:.3f} ms/step")
    return 0


def _save_samples(mod, params, path, seed) -> None:
    import jax
    import numpy as np
    if not hasattr(mod, "sample"):
        raise AttractorError("--samples needs a sampler in the program", None, "--samples")
    draws = mod.sample(params, jax.random.PRNGKey(seed + 2), 2000)
    np.save(path, np.asarray(draws))


def cmd_check(args) -> int:
    from compiler.driver.check import certify
    prog = _compile(args)
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
    from compiler.driver.explain import explain
    print(explain(args.file))
    return 0


def cmd_field(args) -> int:
    from compiler.driver.field import field_command
    print(field_command(args))
    return 0


COMMANDS = {"compile": cmd_compile, "run": cmd_run, "check": cmd_check, "explain": cmd_explain, "field": cmd_field}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    try:
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
