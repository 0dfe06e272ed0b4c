"""Time budgets for compile work that may not finish (SymPy on a user's expression, a rule).

`time_budget(seconds, message, loc)` runs a block under a wall-clock limit and turns an overrun
into `AttractorError(message, loc)`. It uses the interval timer (SIGALRM) of the main thread:
no thread, no process, nothing to clean up. Off the main thread, or where the platform has no
SIGALRM, the block runs without a budget. Budgets nest: an inner one never outlives the outer
one, an overrun is reported by the budget whose deadline passed (an inner budget cut short by the
outer one lets the outer report it), and leaving a budget restores what remained of the outer.
"""
from __future__ import annotations

import contextlib
import signal
import threading
import time

from compiler.ir.diagnostics import AttractorError, Loc


class OutOfTime(AttractorError):
    """The diagnostic of a budget that ran out; an AttractorError, so that it reaches the user as one,
    and its own class, so that a caller with a fallback (LaTeX without SymPy) can catch only it."""


class Overrun(BaseException):
    """Raised by the alarm where the work is; a BaseException so that library code catching
    Exception (SymPy does) cannot swallow it. A caller that knows better what was running may
    catch it to say so; otherwise `time_budget` turns it into its diagnostic."""


_deadlines: list[float] = []   # absolute deadlines of the budgets now open, outermost first
# After its deadline the timer fires again every REFIRE seconds until the budget has left: an Overrun
# raised where Python ignores exceptions (a gc callback; JAX installs one) is raised once more.
REFIRE = 0.05


def _available() -> bool:
    return hasattr(signal, "SIGALRM") and threading.current_thread() is threading.main_thread()


def _on_alarm(signum, frame):
    raise Overrun


@contextlib.contextmanager
def time_budget(seconds: float, message: str, loc: Loc | None = None):
    if not _available() or seconds <= 0:
        yield
        return
    own = time.monotonic() + seconds
    outer_first = bool(_deadlines) and _deadlines[-1] <= own   # the outer budget ends first: its overrun, not ours
    deadline = _deadlines[-1] if outer_first else own
    previous = signal.signal(signal.SIGALRM, _on_alarm)
    _deadlines.append(deadline)
    try:
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3), REFIRE)
        yield
    except Overrun:
        signal.setitimer(signal.ITIMER_REAL, 0)
        if outer_first:
            raise
        raise OutOfTime(message, loc) from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _deadlines.pop()
        signal.signal(signal.SIGALRM, previous)
        if _deadlines:   # the outer budget goes on with what is left of it
            signal.setitimer(signal.ITIMER_REAL, max(_deadlines[-1] - time.monotonic(), 1e-3), REFIRE)
