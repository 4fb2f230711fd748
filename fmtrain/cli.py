"""The ``fmtrain`` command line: parse, call the library, report.

Only argparse and the configurations are imported at start-up, so ``fmtrain --help`` never
loads TensorFlow or MLflow. Bad input ends with one line on stderr and exit status 2; any other failure with one line
and status 1 (``FMTRAIN_DEBUG=1`` shows the traceback).
"""

from __future__ import annotations

import argparse
import os
import sys

from fmtrain import configs

EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


def _add_knobs(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override the configuration's values)")
    for knob in configs.knobs():
        # One vocabulary: --dropout_rate is the MLproject/MLflow name; --dropout-rate also works.
        flags = [f"--{knob.name}"] + ([f"--{knob.name.replace('_', '-')}"] if "_" in knob.name else [])
        group.add_argument(*flags, dest=knob.name, metavar="V", default=None,
                           help=f"{knob.metadata['help']} (default {configs.format_value(knob.default)})")


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data_dir", "--data-dir", default=None,
                        help="directory with the four Fashion-MNIST IDX .gz files "
                             "(default: $FMTRAIN_DATA_DIR, then /usr/share/datasets/fashion-mnist, "
                             "then Keras's download)")
    parser.add_argument("--experiment", default=None,
                        help="MLflow experiment (default fashion-mnist; under `mlflow run` use "
                             "its --experiment-name)")
    parser.add_argument("--quiet", action="store_true", help="no Keras progress output (otherwise a line per epoch)")


class _Parser(argparse.ArgumentParser):
    """argparse with whole option names only and a one-line error."""

    def __init__(self, *args, **kwargs):
        # No abbreviations: `--epoch` must not quietly mean `--epochs` (one name per setting).
        super().__init__(*args, allow_abbrev=False, **kwargs)

    def error(self, message):
        self.exit(EXIT_BAD_INPUT, f"fmtrain: error: {message} (see `{self.prog} --help`)\n")


def build_parser() -> argparse.ArgumentParser:
    """The parser of every subcommand and option."""
    parser = _Parser(prog="fmtrain",
                     description="The Fashion-MNIST chapter's Keras experiments as MLflow runs.")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    commands.add_parser("configs", help="list the configurations and what each changes")

    train = commands.add_parser("train", help="train one configuration as one MLflow run")
    train.add_argument("--config", default=configs.DEFAULT_CONFIG,
                       help=f"configuration name (default {configs.DEFAULT_CONFIG}); see `fmtrain configs`")
    _add_run_options(train)
    train.add_argument("--register_as", "--register-as", default=None, metavar="NAME",
                       help="register the run's model as a new version of NAME")
    _add_knobs(train)

    sweep = commands.add_parser("sweep", help="train several configurations as nested runs and compare them")
    sweep.add_argument("--configs", default=None, metavar="A,B,...",
                       help="configurations to run, in order (default: all, in the chapter's order)")
    _add_run_options(sweep)
    sweep.add_argument("--register_best", "--register-best", default=None, metavar="NAME",
                       help="register the child with the lowest val loss as NAME, alias champion")
    _add_knobs(sweep)

    compare = commands.add_parser("compare", help="rebuild a sweep's figure and table from the store")
    compare.add_argument("run_ids", nargs="+", metavar="RUN_ID",
                         help="a sweep's parent run id, or the run ids to compare")
    compare.add_argument("--output", default="comparison", help="folder for the figure and tables")
    compare.add_argument("--log", action="store_true",
                         help="also log them as artifacts of the parent run (with one parent id)")

    register = commands.add_parser("register", help="register a run's model in the Model Registry")
    register.add_argument("run_id", metavar="RUN_ID")
    register.add_argument("--name", required=True, help="registered model name")
    register.add_argument("--alias", default=None, help="alias to point at the new version")

    evaluate = commands.add_parser("evaluate", help="evaluate a logged or registered model on the test set")
    evaluate.add_argument("--model_uri", "--model-uri", required=True, metavar="URI",
                          help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/model")
    evaluate.add_argument("--data_dir", "--data-dir", default=None, help="as for train")
    evaluate.add_argument("--experiment", default=None, help="as for train")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    args = build_parser().parse_args(argv)
    from fmtrain import commands  # heavy imports start here, after --help has been served

    try:
        return commands.run(args)
    except KeyboardInterrupt:
        print("fmtrain: interrupted; no run was left RUNNING", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - every failure is reported as one line
        if os.environ.get("FMTRAIN_DEBUG"):
            raise
        print(f"fmtrain: error: {commands.describe(error)}", file=sys.stderr)
        return EXIT_BAD_INPUT if commands.is_user_error(error) else EXIT_FAILED

if __name__ == "__main__":
    sys.exit(main())
