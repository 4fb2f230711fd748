"""Stop a job cleanly when a person or a supervisor asks: SIGINT, SIGTERM, SIGHUP.

A signal handler never interrupts a store write. Before any run exists, a signal raises
``Stopped`` at once (nothing is half-written). Once a run is open (``deferred()``), the handler
only records the signal: the first one asks Keras to stop at the end of the current step
(``soft_stop``) and is raised as ``Stopped`` at the next safe point (``check()``: between two
store writes, at the end of a training step); a second one escalates: training stops at the end
of the current step, not the epoch. The run's own code turns Stopped into a run ended KILLED (or
FAILED for Ctrl-C) and the conventional exit status, 128 + the signal's number.
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
_deferring: list[bool] = []


def _handle(signum, frame):
    _requested.append(signum)
    if not _deferring:  # no run is open: nothing can be half-written
        signum = _requested[0]
        _requested.clear()
        raise Stopped(signum)
    for stop in list(_soft_stops):
        stop()


@contextlib.contextmanager
def signals_handled():
    """Handle SIGINT, SIGTERM and SIGHUP as stop requests for the block (main thread only)."""
    main = threading.current_thread() is threading.main_thread()
    try:
        with _handled_by(_handle):
            yield
    finally:
        if main:
            _requested.clear()


@contextlib.contextmanager
def _handled_by(handler):
    """SIGINT, SIGTERM and SIGHUP go to ``handler`` within the block, and back to their previous
    handlers after it; in a thread other than the main one (which cannot set handlers), nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {signum: signal.signal(signum, handler) for signum in SIGNALS}
    try:
        yield
    finally:
        for signum, earlier in previous.items():
            signal.signal(signum, earlier)


@contextlib.contextmanager
def deferred():
    """Within the block (a run is open), signals are only recorded, for ``check()`` to raise at a
    safe point; the first one raised, if any, when the block ends normally."""
    _deferring.append(True)
    try:
        yield
        check()
    finally:
        _deferring.pop()


@contextlib.contextmanager
def held():
    """Within the block, signals are only recorded, and never acted on: the last words of a
    process that is stopping already (its final check and line)."""
    _deferring.append(True)
    try:
        yield
    finally:
        _deferring.pop()


def requested() -> int | None:
    """The first signal received and not yet acted on, if any."""
    return _requested[0] if _requested else None


def escalated() -> bool:
    """Whether a second signal asked to stop now."""
    return len(_requested) > 1


def check() -> None:
    """A safe point: raise Stopped for a signal received meanwhile."""
    if _requested:
        signum = _requested[0]
        _requested.clear()
        raise Stopped(signum)


@contextlib.contextmanager
def soft_stop(stop: Callable[[], None]):
    """Within the block, a signal calls ``stop()``; once the block ends, Stopped is raised for
    that signal."""
    _soft_stops.append(stop)
    try:
        yield
    finally:
        _soft_stops.remove(stop)
    check()


def keras_safe_points():
    """A Keras callback that acts on signals at the end of each training step: a first signal
    stops training after the step (again, since Keras resets ``stop_training`` once it has built
    its input iterator), a second one raises Stopped at once."""
    import keras

    class _SafePoints(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            if escalated():
                check()
            if _requested:
                self.model.stop_training = True

        on_test_batch_end = on_train_batch_end

    return _SafePoints()


@contextlib.contextmanager
def recorded(received: list[int], escalate: bool = False):
    """Within the block, SIGINT, SIGTERM and SIGHUP are only appended to ``received``, for the
    caller to act on: for code that waits inside a native library (Ray), which an exception
    raised by a signal handler would leave in a broken state (main thread only). With
    ``escalate``, a second signal raises Stopped for the first: a person who asks twice wants
    the wait over, whatever state it leaves the library in."""
    def record(signum, frame):
        received.append(signum)
        if escalate and len(received) > 1:
            raise Stopped(received[0])

    with _handled_by(record):
        yield
