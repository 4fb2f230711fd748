"""The runs one command opened, and those it ended on another process's behalf.

The command line reads it after an error to name those runs and to check what the store still
shows RUNNING. It imports nothing, so the command line reads it without loading MLflow.
"""

from __future__ import annotations

_opened: list[tuple[str, str]] = []  # (run id, name) of the runs this command opened
_ended: list[tuple[str, str]] = []  # (run id, name) of the runs it ended for another process


def begin() -> None:
    """Start a new command's ledger (a process may run several commands: ``main()`` in a test)."""
    _opened.clear()
    _ended.clear()


def opened(run_id: str, name: str) -> None:
    _opened.append((run_id, name))


def ended(run_id: str, name: str) -> None:
    _ended.append((run_id, name))


def opened_runs() -> list[tuple[str, str]]:
    """(run id, name) of each run this command opened, in order."""
    return list(_opened)


def touched_runs() -> list[tuple[str, str]]:
    """(run id, name) of each run this command opened or ended, each once, in order."""
    seen: dict[str, str] = {}
    for run_id, name in _opened + _ended:
        seen.setdefault(run_id, name)
    return list(seen.items())
