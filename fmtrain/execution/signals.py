"""Stop a job cleanly when a person or a supervisor asks: SIGINT, SIGTERM, SIGHUP.

While a job runs under ``signals_handled()``, the first signal during ``fit()`` asks Keras to
stop at the end of the current step (interrupting TensorFlow in the middle of a call can
corrupt its memory and abort the process before the run is marked as ended); elsewhere, or on a
second signal, it raises ``Stopped`` at once. The run's own code turns Stopped into a run ended
KILLED (or FAILED for Ctrl-C) and the conventional exit status, 128 + the signal's number.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable

from fmtrain.errors import Stopped

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_requested: list[int] = []
_soft_stops: list[Callable[[], None]] = []


def _handle(signum, frame):
    if _soft_stops and not _requested:
        _requested.append(signum)
        for stop in list(_soft_stops):
            stop()
        return
    _requested.clear()
    raise Stopped(signum)


@contextlib.contextmanager
def signals_handled():
    """Handle SIGINT, SIGTERM and SIGHUP as stop requests for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, _handle) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _requested.clear()


@contextlib.contextmanager
def soft_stop(stop: Callable[[], None]):
    """Within the block, a first signal calls ``stop()`` instead of raising; once the block
    ends, Stopped is raised for that signal."""
    _soft_stops.append(stop)
    try:
        yield
    finally:
        _soft_stops.remove(stop)
    if _requested:
        raise Stopped(_requested.pop())


@contextlib.contextmanager
def recorded(received: list[int]):
    """Within the block, SIGINT, SIGTERM and SIGHUP are only appended to ``received``, for the
    caller to act on: for code that waits inside a native library (Ray), which an exception
    raised by a signal handler would leave in a broken state (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, lambda signum, frame: received.append(signum))
                for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
