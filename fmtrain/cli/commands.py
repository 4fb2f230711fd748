"""The ``fmtrain`` commands: one decorated click function each, options generated from the settings.

Only click and the configurations are imported at start-up, so ``fmtrain --help`` and a bad
option never load TensorFlow or MLflow: each command imports its workflow when it runs. A
command returns its exit status; ``fmtrain.cli.app`` turns errors into one line and a status.
"""

from __future__ import annotations

import json

import click
from click.core import ParameterSource

from fmtrain import errors
from fmtrain.cli.options import (
    SEEDS_HELP,
    engine_options,
    option_names,
    overrides_from,
    resume_options,
    run_options,
    search_options,
    setting_options,
)
from fmtrain.learning import configs

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


@click.group(context_settings=CONTEXT)
def cli():
    """The Fashion-MNIST chapter's Keras experiments as MLflow runs."""


@cli.command("configs")
def configs_command():
    """List the configurations, the chapter step each reproduces and what it changes."""
    from fmtrain.cli import output

    click.echo(output.configs_table())


@cli.command("train")
@click.option("--config", type=click.Choice(list(configs.CONFIGS)), default=configs.DEFAULT_CONFIG,
              show_default=True, help="configuration to train; see `fmtrain configs`")
@run_options
@click.option(*option_names("register_as"), "register_as", metavar="NAME", default=None,
              help="register the run's model as a new version of NAME")
@click.option("--seeds", metavar="N|A,B,...", default=None, help=SEEDS_HELP)
@resume_options
@engine_options
@setting_options
def train_command(config, data_dir, experiment, quiet, register_as, seeds, resume, keep_state,
                  workers, ray_address, max_retries, **settings):
    """Train one configuration as one MLflow run (with --seeds, one run per seed under a parent)."""
    from fmtrain.cli import output

    overrides = overrides_from(settings)
    if resume:  # the run's own configuration: --config counts only when given
        from fmtrain.workflows import resume_run
        given = click.get_current_context().get_parameter_source("config") == ParameterSource.COMMANDLINE
        outcome = resume_run.resume(resume, overrides, data_dir=data_dir, config_name=config if given else None,
                                  refused={"--seeds": seeds, "--register_as": register_as, "--experiment": experiment},
                                  verbose=0 if quiet else 2, keep_state=keep_state, echo=click.echo)
        click.echo(output.train_report(outcome))
        return 0
    seed_list = configs.parse_seeds(seeds, int(float(overrides.get("seed", configs.DEFAULT.seed))))
    if len(seed_list) > 1:
        from fmtrain.workflows import sweep

        outcome = sweep.run_sweep(config, overrides, data_dir=data_dir, experiment=experiment,
                                  register_best=register_as, verbose=0 if quiet else 2, seeds=seeds,
                                  parent_name=f"{config} seeds", workers=workers,
                                  ray_address=ray_address, max_retries=max_retries, echo=click.echo)
        click.echo(output.sweep_report(outcome, register_as))
        return errors.EXIT_FAILED if outcome.failures else 0
    from fmtrain.workflows import train

    outcome = train.train(config, overrides, data_dir=data_dir,
                          experiment=experiment, register_as=register_as,
                          verbose=0 if quiet else 2, keep_state=keep_state)
    click.echo(output.train_report(outcome))
    return 0


@cli.command("sweep")
@click.option("--configs", "names", metavar="A,B,...", default=None,
              help="configurations to run, in order [default: all, in the chapter's order]")
@run_options
@click.option(*option_names("register_best"), "register_best", metavar="NAME", default=None,
              help="register the child with the lowest val loss as NAME, alias champion")
@click.option("--seeds", metavar="N|A,B,...", default=None, help=SEEDS_HELP)
@click.option("--resume", metavar="PARENT_RUN_ID", default=None,
              help="finish an interrupted sweep: keep its FINISHED children, run the others again "
                   "in the same parent (configurations and settings come from the parent)")
@click.option("--share_epochs/--no-share_epochs", "--share-epochs/--no-share-epochs", "share_epochs",
              default=None,
              help="train each family of configurations (the same weights, epoch after epoch) once, "
                   "and replay its epochs for the others, each still a run of its own "
                   "[default: with several seeds]")
@engine_options
@setting_options
def sweep_command(names, data_dir, experiment, quiet, register_best, seeds, resume, workers,
                  ray_address, max_retries, share_epochs, **settings):
    """Train several configurations as nested runs of one parent and compare them."""
    from fmtrain.cli import output
    from fmtrain.workflows import sweep

    outcome = sweep.run_sweep(names, overrides_from(settings), data_dir=data_dir, experiment=experiment,
                              register_best=register_best, verbose=0 if quiet else 2, resume=resume,
                              seeds=seeds, workers=workers, ray_address=ray_address,
                              share_epochs=share_epochs, max_retries=max_retries, echo=click.echo)
    click.echo(output.sweep_report(outcome, register_best))
    if outcome.failures:
        click.echo(f"fmtrain: error: {len(outcome.failures)} configuration(s) failed: "
                   f"{', '.join(outcome.failures)}", err=True)
        return errors.EXIT_FAILED
    return 0


@cli.command("tune")
@click.option("--config", type=click.Choice(list(configs.CONFIGS)), default=configs.DEFAULT_CONFIG,
              show_default=True, help="the configuration each trial starts from")
@search_options
@run_options
@click.option(*option_names("register_best"), "register_best", metavar="NAME", default=None,
              help="register the best complete trial as NAME, with --alias")
@click.option("--alias", default=None, metavar="ALIAS",
              help="the alias --register_best sets [default: champion]")
@click.option("--resume", metavar="PARENT_RUN_ID", default=None,
              help="continue a search whose command was killed, in the same parent run: its ended "
                   "trials are kept, its settings and space come from the parent (--trials may "
                   "raise how many) [default: none, a new search]")
@setting_options
def tune_command(config, space_path, show_space, trials, max_concurrent, time_budget, ray_address,
                 max_retries, data_dir, experiment, quiet, register_best, alias, resume, **settings):
    """Search the settings (Optuna's TPE sampler, trials pruned by successive halving): one parent
    run, a nested run per trial. --seed seeds the sampler and every trial's training."""
    from fmtrain.cli import output
    from fmtrain.tuning import space

    if show_space:
        searched = space.load_space(space_path)
        click.echo(space.space_table(searched))
        click.echo("\n" + json.dumps(space.to_data(searched), indent=2))
        return 0
    from fmtrain.workflows import search

    resume = None if resume in (None, "", "none") else resume  # MLproject's default: none
    outcome = search.run_search(overrides_from(settings), config_name=config, space_path=space_path,
                                trials_wanted=trials, max_concurrent=max_concurrent,
                                time_budget=time_budget, ray_address=ray_address, data_dir=data_dir,
                                experiment=experiment, register_best=register_best, alias=alias,
                                max_retries=max_retries, verbose=0 if quiet else 2, resume=resume,
                                given=given_options(), echo=click.echo)
    click.echo(output.search_report(outcome, register_best, alias))
    problems = output.search_problems(outcome, register_best)
    for problem in problems:
        click.echo(f"fmtrain: error: {problem}", err=True)
    return errors.EXIT_FAILED if problems else 0


def given_options() -> tuple[str, ...]:
    """The options of the running command that were given on its command line (by their first
    name: ``--trials``, ``--max_concurrent``)."""
    context = click.get_current_context()
    return tuple(parameter.opts[0] for parameter in context.command.params
                 if context.get_parameter_source(parameter.name) == ParameterSource.COMMANDLINE
                 and parameter.name != "resume")


def _add_record_commands() -> None:
    from fmtrain.cli import record_commands

    for command in record_commands.COMMANDS:
        cli.add_command(command)


_add_record_commands()
