"""The ``fmtrain`` process: run a command, map errors to exit statuses, leave promptly.

Errors end with one line on stderr: exit 2 for bad input (before any run exists), 1 when a run
failed, 128 + N when signal N stopped the job (``FMTRAIN_DEBUG=1`` shows tracebacks).
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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    backend.quiet_loggers()
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
        click.echo(_describe(error), err=True)
        return exit_code(error)
    return status if isinstance(status, int) else 0


def exit_code(error: BaseException) -> int:
    """The exit status for ``error``: see README's table of what happens when things go wrong."""
    if isinstance(error, errors.RunEnded):
        return error.exit_code
    if isinstance(error, errors.Stopped):
        return 128 + error.signum
    if isinstance(error, KeyboardInterrupt):
        return errors.EXIT_INTERRUPTED
    if isinstance(error, (ValueError, OSError)):
        return errors.EXIT_BAD_INPUT
    # MLflow's own errors that escape before any run exists are refused requests: the store
    # said no to the input (a run after creation is always wrapped in RunEnded).
    if type(error).__module__.startswith("mlflow."):
        return errors.EXIT_BAD_INPUT
    return errors.EXIT_FAILED


def _describe(error: BaseException) -> str:
    if isinstance(error, errors.RunStopped):
        return f"fmtrain: {error}; no run was left RUNNING"
    if isinstance(error, (errors.Stopped, KeyboardInterrupt)):
        text = str(error) if isinstance(error, errors.Stopped) else "interrupted (Ctrl-C)"
        return f"fmtrain: {text}; no run was left RUNNING"
    return f"fmtrain: error: {errors.one_line(error)}"


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
