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


MAX_STEPS = 2**31 - 1   # steps are an int32 on the device
MAX_SEED = 2**32 - 1    # jax.random.PRNGKey takes a 32-bit seed


class _ArgumentParser(argparse.ArgumentParser):
    """argparse with the project's diagnostics: `attractor: error: ...` and exit code 1."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    ap = _ArgumentParser(prog="attractor", description="A compiler for machine-learning objectives.")
    sub = ap.add_subparsers(dest="command", required=True, parser_class=_ArgumentParser)

    c = sub.add_parser("compile", help="parse, rewrite and print or emit a program")
    c.add_argument("file")
    c.add_argument("--show", choices=("ir", "derivation", "field"), default="derivation")
    c.add_argument("--format", choices=("text", "json", "latex"), default="text")
    c.add_argument("--emit", choices=("jax",))
    c.add_argument("-o", "--output")
    c.add_argument("--via", help="force a rule, e.g. 'jensen(iwae=8)'")

    r = sub.add_parser("run", help="compile and train; print the result")
    r.add_argument("file")
    r.add_argument("--steps")
    r.add_argument("--seed", default="0")
    r.add_argument("--data", help="rebind the data, e.g. 'npz(\"file.npz\")'")
    r.add_argument("--dynamics", choices=DYNAMICS)
    r.add_argument("--via")
    r.add_argument("--json", action="store_true")
    r.add_argument("--plot")
    r.add_argument("--samples")
    r.add_argument("--force", action="store_true", help="run even where the memory estimate exceeds this machine's")

    k = sub.add_parser("check", help="numerical certificates of every recorded relation")
    k.add_argument("file")
    k.add_argument("--seed", default="0")
    k.add_argument("--via")

    e = sub.add_parser("explain", help="the rules that match, and the alternatives not taken")
    e.add_argument("file")

    f = sub.add_parser("field", help="Jacobian eigenvalues of the vector field")
    f.add_argument("file")
    f.add_argument("--at", default="init", help="init, final, or name=value,... for scalar parameters")
    f.add_argument("--steps")
    f.add_argument("--seed", default="0")
    f.add_argument("--dynamics", choices=DYNAMICS)
    f.add_argument("--plot")
    return ap


def _whole_number(args, option: str, low: int, high: int) -> None:
    """`--steps` / `--seed`: a whole number in [low, high], checked before anything runs."""
    attr = option.lstrip("-")
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


def output_path(path: str, option: str, program: str | None = None) -> Path:
    """Where an output file goes, checked before any work: not the program itself, not a
    folder, in a folder that exists and can be written."""
    out = Path(path)
    if program is not None and out.exists() and out.resolve() == Path(program).resolve():
        raise AttractorError(f"the output {path} is the program file itself; choose another name", None, option)
    if out.is_dir() or str(path).endswith(("/", os.sep)):
        raise AttractorError(f"{path} is a folder; give a file name", None, option)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise AttractorError(f"the folder {parent} does not exist", None, option)
    if not os.access(parent, os.W_OK):
        raise AttractorError(f"the folder {parent} is not writable", None, option)
    return out


def write_atomically(path: Path, option: str, write) -> None:
    """`write(temporary_path)`, then rename it over `path`: a failed write (a full disk, an
    interrupt) leaves any earlier file whole. The temporary keeps `path`'s suffix."""
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        write(tmp)
        os.replace(tmp, path)
    except OSError as e:
        raise AttractorError(f"cannot write {path}: {e.strerror or e}", None, option) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def _compile(args) -> CompiledProgram:
    return compile_file(args.file, via=getattr(args, "via", None), dynamics=getattr(args, "dynamics", None))


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

    params, history = mod.fit(data, args.steps, args.seed, callback=callback)   # None: the program's default
    seconds, compile_seconds = (history[-1]["seconds"], history[-1]["compile_seconds"]) if history else (0.0, None)
    result = mod.summary(params, data, steps, seconds, args.seed, compile_seconds, history)
    if samples is not None:
        _save_samples(mod, params, samples, args.seed)
    if plot is not None:
        from compiler.driver.plot import plot_run
        write_atomically(plot, "--plot", lambda tmp: plot_run(str(tmp), history, report_history, mod, params, data))
    if args.json:
        print(json.dumps(mod.json_safe(result)))
    else:
        print(f"objective {result['objective']:.6g}" + (f"   estimate {result['estimate']:.6g}" if result["estimate"] is not None else ""))
        for k, v in result["reports"].items():
            print(f"report {k} = {v:.6g}")
        print(f"{result['steps']} steps, {result['seconds_per_step'] * 1e3:.3f} ms/step, "
              f"{'converged' if result['converged'] else 'not converged'}")
        for warning in result["warnings"]:
            print(f"warning: {warning}", file=sys.stderr)
    return 3 if diverged(result, history, mod.PLAYERS) else 0


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
    compile_file_text(args.file)
    print(explain(args.file))
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
        raise AttractorError(f"cannot read file: {e.strerror}", None, str(path)) from None
    except UnicodeDecodeError:
        raise AttractorError("the file is not UTF-8 text", None, str(path)) from None


COMMANDS = {"compile": cmd_compile, "run": cmd_run, "check": cmd_check, "explain": cmd_explain, "field": cmd_field}


def main(argv=None) -> int:
    for stream in (sys.stdout, sys.stderr):   # an ASCII-only terminal gets escapes, not a UnicodeEncodeError
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="backslashreplace")
    args = _parser().parse_args(argv)
    try:
        _whole_number(args, "--steps", 0, MAX_STEPS)
        _whole_number(args, "--seed", 0, MAX_SEED)
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
