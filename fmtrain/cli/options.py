"""Options shared by the commands, generated from the configuration dataclass where they can be.

Every setting's option is declared once, from its field: its name (``--dropout_rate``, and
``--dropout-rate``), its type (a ``click.Choice`` for closed sets) and its help. Imports only
click and the configurations, so ``fmtrain --help`` stays fast.
"""

from __future__ import annotations

import click

from fmtrain.learning import configs

SEEDS_HELP = ("train each configuration with several seeds: a count N (the seed setting, then the "
              "next N-1) or a list 42,7,1234; each (configuration, seed) is one run under a parent, "
              "and the parent gets the chapter report [default: 1]")


class SettingType(click.ParamType):
    """A setting's value as text, checked by the configuration's own parser.

    The text is kept (not the parsed value) so that ``none`` stays distinct from "not given".
    """

    def __init__(self, knob):
        self.knob = knob
        kind = knob.type
        self.name = ("true|false" if kind == "bool" else
                     "integer" if kind.startswith("int") else "number")
        if "None" in kind:
            self.name += "|none"

    def convert(self, value, param, ctx):
        try:
            configs.parse_value(self.knob.name, value)
        except ValueError as error:
            self.fail(str(error), param, ctx)
        return value if isinstance(value, str) else configs.format_value(value)


def option_names(name: str) -> list[str]:
    """``--dropout_rate`` (the one name, as in MLproject and MLflow), and ``--dropout-rate``."""
    return [f"--{name}"] + ([f"--{name.replace('_', '-')}"] if "_" in name else [])


def setting_options(command):
    """Add one option per configuration setting, each defaulting to the configuration's value."""
    for knob in reversed(configs.knobs()):
        command = setting_option(knob.name, of_configuration=True)(command)
    return command


def setting_option(name: str, of_configuration: bool = False):
    """The option of the setting ``name`` (``--name``, ``--na-me``), as ``setting_options`` adds
    it (``of_configuration``: its default may be a configuration's)."""
    knob = configs.knob(name)
    choices = {"optimizer": configs.OPTIMIZERS, "backend": configs.BACKENDS,
               "batch_order": configs.BATCH_ORDERS}.get(knob.name)
    kind = click.Choice(choices) if choices else SettingType(knob)
    default = configs.format_value(knob.default) + (", or the configuration's" if of_configuration else "")
    return click.option(*option_names(knob.name), knob.name, type=kind, default=None,
                        help=f"{knob.metadata['help']} [default: {default}]")


def run_options(command):
    """Options shared by the commands that train: data, experiment, quiet."""
    for decorator in reversed([
        click.option(*option_names("data_dir"), "data_dir", metavar="DIR", default=None,
                     help="folder with the four Fashion-MNIST IDX .gz files [default: "
                          "$FMTRAIN_DATA_DIR, then /usr/share/datasets/fashion-mnist]"),
        click.option("--experiment", metavar="NAME", default=None,
                     help="MLflow experiment [default: $MLFLOW_EXPERIMENT_NAME, else "
                          "$MLFLOW_EXPERIMENT_ID, else fashion-mnist; under `mlflow run`, its "
                          "--experiment-name]"),
        click.option("--quiet", is_flag=True, help="no Keras progress lines"),
    ]):
        command = decorator(command)
    return command


def resume_options(command):
    """``train``'s ``--resume RUN_ID`` and ``--keep_state`` (``--keep-state``)."""
    for decorator in reversed([
        click.option("--resume", metavar="RUN_ID", default=None,
                     help="continue this run, lost with its process (KILLED, or RUNNING with a stale "
                          "heartbeat), from its last completed epoch, in the same run; settings and "
                          "data come from the run (docs/resume.md)"),
        click.option(*option_names("keep_state"), "keep_state", is_flag=True,
                     help="keep the run's resumable state (artifacts under resume/) when it finishes"),
    ]):
        command = decorator(command)
    return command


def engine_options(command):
    """Where a sweep's children train: ``--workers`` and ``--ray_address`` (``--ray-address``)."""
    for decorator in reversed([
        click.option(*option_names("workers"), "workers", type=click.IntRange(min=1), default=None,
                     metavar="N",
                     help="children trained at once, each in a Ray worker process of its own; 1 = one "
                          "after another in this process [default: 2 with Ray installed "
                          "(pip install '.[ray]' in fmtrain's checkout), else 1]"),
        ray_address_option("train the children"),
        max_retries_option("child"),
    ]):
        command = decorator(command)
    return command


def max_retries_option(what: str):
    """``--max_retries`` (``--max-retries``): how often a ``what`` whose Ray worker died is tried
    again."""
    return click.option(*option_names("max_retries"), "max_retries", type=click.IntRange(min=0), default=2,
                        show_default=True, metavar="N",
                        help=f"a {what} whose Ray worker dies is tried again on a live worker, from its "
                             "last completed epoch in the same run, up to N times")


def ray_address_option(what: str):
    """``--ray_address`` (``--ray-address``): the Ray cluster on which to ``what``."""
    return click.option(*option_names("ray_address"), "ray_address", metavar="HOST:PORT", default=None,
                        help=f"{what} on this Ray cluster (needs an http(s):// MLFLOW_TRACKING_URI) "
                             "[default: $RAY_ADDRESS, else a local Ray instance]")


def search_options(command):
    """The options of ``fmtrain tune``'s search: the space, how many trials, how many at once,
    the time budget and the Ray cluster."""
    for decorator in reversed([
        click.option("--space", "space_path", metavar="FILE", default=None,
                     help="the search space, a JSON or YAML file shaped as --show-space prints it "
                          "[default: the chapter's knobs]"),
        click.option("--show-space", "show_space", is_flag=True,
                     help="print the search space (and its JSON) and exit"),
        click.option("--trials", type=click.IntRange(min=1), default=30, show_default=True,
                     help="how many trials (runs) the search makes"),
        click.option(*option_names("max_concurrent"), "max_concurrent", type=click.IntRange(min=1),
                     default=None, metavar="N",
                     help="trials at once, each in a Ray worker of its own; 1 = one after another in "
                          "this process [default: 2 with Ray installed, else 1]"),
        click.option(*option_names("time_budget"), "time_budget", type=click.FloatRange(min=0, min_open=True),
                     default=None, metavar="SECONDS",
                     help="stop the search after this long: running trials end FINISHED, tagged "
                          "as stopped by the budget"),
        ray_address_option("run the trials"),
        max_retries_option("trial"),
    ]):
        command = decorator(command)
    return command


def overrides_from(options: dict) -> dict[str, str]:
    """The settings given on the command line, as text keyed by field name."""
    return {k.name: options[k.name] for k in configs.knobs() if options.get(k.name) is not None}
