"""The command line of an emitted module: `python module.py [--steps N] [--seed S] [--json]`
trains on the program's data as `attractor run` does. Bad arguments and unreadable input files
(the data, the author's Python nets) end with one line on stderr and exit code 2, never a traceback."""
import argparse
import json
import math
import sys
from pathlib import Path

from compiler.backend.runtime.program import PLAYERS, STEPS, load_data
from compiler.backend.runtime.training import MAX_STEPS, fit, summary
from compiler.backend.runtime.verdict import json_safe
from compiler.data.datasets import DatasetError

MAX_SEED = 2**63 - 2   # seed + 1 (the evaluation key) is still a 64-bit signed integer


def text_of(codes):
    """Text stored as code points (file names: no user text in the source)."""
    return "".join(map(chr, codes))


def data_folder(program_dir):
    """Where relative data paths start: the program's folder where it exists, else this file's."""
    if program_dir and Path(program_dir).is_dir():
        return Path(program_dir)
    return Path(__file__).resolve().parent


def fail(message):
    """One line on stderr, exit code 2."""
    sys.stderr.write(f"error: {message}\n")
    sys.exit(2)


class OneLineParser(argparse.ArgumentParser):
    """argparse whose errors are one line and exit code 2."""

    def error(self, message):
        fail(message)


def whole_number(low, high):
    """An argparse type: an integer from `low` to `high`."""
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high}")
        return value
    return parse


def progress_bar(done, total, record, params):
    width = 30
    filled = int(width * done / max(total, 1))
    text = " ".join(f"{k}={v:.4g}" for k, v in record.items())
    sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{total} {text}")
    sys.stderr.flush()
    if done >= total:
        sys.stderr.write("\n")


def main(argv=None):
    parser = OneLineParser(description=(__doc__ or "").splitlines()[0] if __doc__ else None)
    parser.add_argument("--steps", type=whole_number(0, MAX_STEPS), default=None)
    parser.add_argument("--seed", type=whole_number(0, MAX_SEED), default=0)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--eval-batch", type=whole_number(1, MAX_STEPS), default=None,
                        help="evaluate over the data in batches of N examples (default: one pass)")
    args = parser.parse_args(argv)
    try:       # the data, then the author's nets (loaded when fit initialises): the program's input files
        data = load_data()
        params, history = fit(data, args.steps, args.seed, callback=None if args.json else progress_bar)
    except DatasetError as e:
        fail(e)
    seconds, compile_seconds = (history[-1]["seconds"], history[-1]["compile_seconds"]) if history else (0.0, None)
    steps = STEPS if args.steps is None else args.steps
    result = summary(params, data, steps, seconds, args.seed, compile_seconds, history, args.eval_batch)
    print(json.dumps(json_safe(result)) if args.json else result)
    if not args.json:
        for warning in result["warnings"]:
            sys.stderr.write(f"warning: {warning}\n")
    losses = [h[p] for h in history for p in PLAYERS if p in h]
    if not all(math.isfinite(v) for v in losses + [result["objective"]]):
        sys.exit(3)   # the run diverged: a NaN or an infinity
