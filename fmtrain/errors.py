"""fmtrain's error kinds and exit statuses (the command line maps the one to the other).

Bad input (a ValueError or OSError: an unknown name, a bad value, missing data, an unusable
store) is met before any run exists. Once a run exists, every failure is raised as RunEnded
naming that run, so a person always learns which run to look at.
"""

from __future__ import annotations

import signal

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class RunEnded(Exception):
    """A run that was created and then ended badly; the message names the run."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, run_id: str | None = None):
        super().__init__(message)
        self.run_id = run_id

    def __reduce__(self):  # whole across processes: a Ray worker's error reaches the driver
        return type(self), (str(self), self.run_id)


class RunFailed(RunEnded):
    """The run failed (status FAILED, the error in the tag ``fmtrain.error``): exit status 1."""


class RunStopped(RunEnded):
    """A signal stopped the run (status KILLED, or FAILED for Ctrl-C): exit status 128 + signal."""

    def __init__(self, message: str, run_id: str | None, signum: int):
        super().__init__(message, run_id)
        self.signum = signum
        self.exit_code = 128 + signum

    def __reduce__(self):
        return type(self), (str(self), self.run_id, self.signum)


class StoreError(ValueError):
    """The tracking store cannot be opened or reached; the message names it and what to do."""


class WorkerDied(RuntimeError):
    """The worker process running a job died without a word: killed, out of memory, node lost."""


class Stopped(BaseException):
    """Raised inside a run when a signal asks the job to stop (SIGINT, SIGTERM, SIGHUP).

    A BaseException, like KeyboardInterrupt, so that no ``except Exception`` swallows it."""

    def __init__(self, signum: int):
        super().__init__(signal_description(signum))
        self.signum = signum

    def __reduce__(self):
        return type(self), (self.signum,)


def signal_description(signum: int) -> str:
    """``interrupted (Ctrl-C)`` for SIGINT, ``killed by SIGTERM`` for the others."""
    if signum == signal.SIGINT:
        return "interrupted (Ctrl-C)"
    return f"killed by {signal.Signals(signum).name}"


def one_line(error: BaseException) -> str:
    """The first line of the error's message, or its type when it has none."""
    text = str(getattr(error, "message", "") or error).strip()
    return text.splitlines()[0] if text else type(error).__name__
