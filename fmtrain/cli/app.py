"""The ``fmtrain`` process: run a command, map errors to exit statuses, leave promptly.

Errors end with one line on stderr: exit 2 for bad input (nothing was created), 1 when a run
failed (named), 128 + N when signal N stopped the job (``FMTRAIN_DEBUG=1`` shows tracebacks).
After an error, the runs this process opened are read back from the store, and the line says
which, if any, is still RUNNING and what will end it.
"""

from __future__ import annotations

import logging
import os
import sys

import click

from fmtrain import errors, internals
from fmtrain.cli.commands import cli
from fmtrain.execution import signals
from fmtrain.learning import backend
from fmtrain.tracking import ledger


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    # MLflow writes the experiment a command selects into MLFLOW_EXPERIMENT_ID, for the
    # processes it starts: the next command called in this process chooses its own again.
    chosen = os.environ.get("MLFLOW_EXPERIMENT_ID")
    try:
        return _main(argv)
    finally:
        if chosen is None:
            os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
        else:
            os.environ["MLFLOW_EXPERIMENT_ID"] = chosen


def _main(argv: list[str] | None) -> int:
    backend.quiet_loggers()
    ledger.begin()
    try:
        with signals.signals_handled():
            status = cli.main(args=argv, prog_name="fmtrain", standalone_mode=False)
    except click.ClickException as error:
        message = " ".join(error.format_message().split())
        command = getattr(getattr(error, "ctx", None), "command_path", "fmtrain")
        click.echo(f"fmtrain: error: {message} (see `{command} --help`)", err=True)
        return errors.EXIT_BAD_INPUT
    except click.exceptions.Abort:
        click.echo("fmtrain: interrupted", err=True)
        return errors.EXIT_INTERRUPTED
    except BaseException as error:  # noqa: BLE001 - every failure is reported as one line
        if isinstance(error, SystemExit):
            raise
        if os.environ.get("FMTRAIN_DEBUG"):
            raise
        with signals.signals_handled(), signals.held():  # another signal cannot cut the last line short
            click.echo(_describe(error), err=True)
            return exit_code(error, ledger.opened_runs())
    return status if isinstance(status, int) else 0


def exit_code(error: BaseException, created: list | tuple = ()) -> int:
    """The exit status for ``error``, after this command ``created`` those runs: see
    docs/operations.md, Exit statuses."""
    if isinstance(error, errors.RunEnded):
        return error.exit_code
    if isinstance(error, errors.Stopped):
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return errors.EXIT_INTERRUPTED
    if created:  # something was created: not bad input, whatever the error
        return errors.EXIT_FAILED
    if isinstance(error, (ValueError, OSError)):
        return errors.EXIT_BAD_INPUT
    # MLflow's own errors that escape before any run exists are refused requests: the store
    # said no to the input.
    if type(error).__module__.startswith("mlflow."):
        return errors.EXIT_BAD_INPUT
    return errors.EXIT_FAILED


def _left_open(message: str) -> list[str]:
    """The final check, read back from the store: runs this command opened or ended and left
    RUNNING, those that the message already sends to a journal aside."""
    if not ledger.touched_runs():  # no run: the store need not be asked (nor MLflow loaded)
        return []
    from fmtrain.tracking import lost_runs

    return [line for line in lost_runs.left_open()
            if not (line.split()[1] in message and "journal" in message)]


def _describe(error: BaseException) -> str:
    if isinstance(error, errors.RunStopped | errors.Stopped | KeyboardInterrupt):
        if isinstance(error, errors.RunStopped | errors.Stopped):
            text = str(error)
        else:
            text = "interrupted (Ctrl-C)"
        left = _left_open(text)
        return f"fmtrain: {text}; " + ("; ".join(left) if left else "no run was left RUNNING")
    text = f"fmtrain: error: {errors.one_line(error)}"
    opened = ledger.opened_runs()
    if not isinstance(error, errors.RunEnded) and opened:
        text += " (after " + ", ".join(f"run {run_id} ({name})" for run_id, name in opened) + ")"
    left = _left_open(text)
    return text + ("; " + "; ".join(left) if left else "")


def run() -> None:
    """The ``fmtrain`` executable: ``main()``, then a prompt exit.

    Every run is ended and every line printed by the time ``main()`` returns. Python's own
    tear-down of TensorFlow's or JAX's native state would then take about a second more, so the
    exit handlers run (MLflow's and JAX's among them) and the process leaves without it.
    """
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    internals.run_exit_handlers()
    logging.shutdown()
    os._exit(code)


if __name__ == "__main__":
    run()
