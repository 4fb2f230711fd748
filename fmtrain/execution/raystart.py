"""Starting Ray, or joining its cluster, in one place: for sweeps' engines and searches alike.

A signal while Ray starts stops the command with its one line and 128 + N, though ``ray.init``
installs a SIGTERM handler of its own that would exit at once (status 15, no word).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading

from fmtrain import internals
from fmtrain.errors import Stopped, one_line
from fmtrain.execution import signals


def ray_environment(local: bool = True) -> None:
    """Variables Ray reads when it is imported, so set before: each worker's own lines (Keras's
    epochs), without colour codes, not "[repeated 2x across cluster]"; no usage report leaving
    the machine; and for a local instance, Ray's default token authentication without its
    notice (a Ray imported before the variable is set would not send the token), and no idle
    workers started with the instance (``internals.ray_idle_workers_not_prestarted``)."""
    for name in ("RAY_DEDUP_LOGS", "RAY_COLOR_PREFIX", "RAY_USAGE_STATS_ENABLED"):
        os.environ.setdefault(name, "0")
    if local:
        os.environ.setdefault("RAY_AUTH_MODE", "token")
        internals.ray_idle_workers_not_prestarted()


def connect(placement, env: dict[str, str] | None = None):
    """Start a local Ray instance for ``placement`` (an engines.Placement) (or join its cluster) and return ``ray``;
    ``env``, when given, is every worker's environment. ValueError in one line when Ray cannot
    be imported or started."""
    ray_environment(local=placement.address is None)
    try:
        import ray
    except ImportError as error:
        raise ValueError(f"Ray cannot be imported ({error}); install it with "
                         "`pip install '.[ray]'` in fmtrain's checkout") from None
    runtime = {"runtime_env": {"env_vars": env}} if env else {}
    received: list[int] = []
    with _signal_handlers_kept(), signals.recorded(received):
        try:
            if placement.address is None:
                ray.init(address="local", num_cpus=placement.workers * placement.threads,
                         include_dashboard=False, logging_level=logging.WARNING, **runtime)
            else:
                ray.init(address=placement.address, logging_level=logging.WARNING, **runtime)
        except SystemExit as leaving:
            # ray.init installs a SIGTERM handler that exits at once (status 15, no word):
            # a SIGTERM in that window is this process's stop, with its one line and 143.
            with contextlib.suppress(Exception):
                ray.shutdown()
            if leaving.code in (signal.SIGTERM, signal.SIGINT):
                raise Stopped(leaving.code) from None
            raise
        except Exception as error:  # noqa: BLE001 - any failure to start is reported in one line
            with contextlib.suppress(Exception):
                ray.shutdown()
            if received:
                raise Stopped(received[0]) from None
            where = f"the Ray cluster at {placement.address}" if placement.address else "a local Ray instance"
            raise ValueError(f"{where} cannot be used: {one_line(error)}") from None
    if received:  # a signal while Ray started: stop before anything else begins
        ray.shutdown()
        raise Stopped(received[0])
    return ray


@contextlib.contextmanager
def ray_session(placement, env: dict[str, str]):
    """Ray, started (or joined) for the block with ``env`` in every worker, and shut down after."""
    ray = connect(placement, env)
    try:
        yield ray
    finally:
        ray.shutdown()


@contextlib.contextmanager
def _signal_handlers_kept():
    """Undo ``ray.init``'s SIGTERM handler (exit at once): this process's own handling, which
    ends its runs KILLED, must stay."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    handlers = {signum: signal.getsignal(signum) for signum in signals.SIGNALS}
    try:
        yield
    finally:
        for signum, handler in handlers.items():
            if handler is not None:
                signal.signal(signum, handler)
