"""The commands on what the store holds: compare and report on sweeps, register, evaluate and
serve models, reap runs whose process died, replay journals. One decorated click function each;
``fmtrain.cli.commands`` adds them to the command line. Each imports its workflow when it runs.
"""

from __future__ import annotations

import click

from fmtrain.cli.options import option_names, setting_option
from fmtrain.learning import configs


@click.command("compare")
@click.argument("run_ids", nargs=-1, required=True, metavar="RUN_ID...")
@click.option("--output", default="comparison", show_default=True, metavar="DIR",
              help="folder for the figure and tables")
@click.option("--log", is_flag=True, help="also log them on the parent run (one parent id only)")
def compare_command(run_ids, output, log):
    """Rebuild a sweep's figure and tables from the store (a parent run id, or run ids)."""
    from fmtrain.workflows import compare

    if log and len(run_ids) != 1:
        raise ValueError("--log needs exactly one run id: the sweep's parent run")
    markdown, folder = compare.compare_into(list(run_ids), output)
    click.echo(markdown)
    click.echo(f"figure and tables written to {folder}/")
    if log:
        compare.log_comparison(run_ids[0], *compare.compare(list(run_ids)))
        click.echo(f"logged on run {run_ids[0]}")
    return 0


@click.command("report")
@click.argument("parent_run_id")
@click.option("--output", default="report", show_default=True, metavar="DIR",
              help="folder for chapter-report.md and its figures")
@click.option("--log/--no-log", default=True, show_default=True,
              help="log the report on the parent run and set it as the run's description")
def report_command(parent_run_id, output, log):
    """Statistics over seeds from a sweep's runs in the store: the chapter's questions answered."""
    from fmtrain.workflows import report

    chapter = report.report(parent_run_id, output=output, log=log)
    click.echo(chapter.markdown())
    click.echo(f"report written to {output}/" + (f"; logged on run {parent_run_id}" if log else ""))
    return 0


@click.command("register")
@click.argument("run_id")
@click.option("--name", required=True, help="registered model name")
@click.option("--alias", default=None, help="alias to point at the new version")
def register_command(run_id, name, alias):
    """Register a run's model in the Model Registry as a new version."""
    from fmtrain.workflows import evaluate

    version = evaluate.register(run_id, name, alias)
    with_alias = f" with alias {alias}" if alias else ""
    click.echo(f"registered run {run_id} as {name} version {version}{with_alias}")
    click.echo(f"  load it with models:/{name}/{version}"
               + (f" or models:/{name}@{alias}" if alias else ""))
    return 0


@click.command("evaluate")
@click.option(*option_names("model_uri"), "model_uri", required=True, metavar="URI",
              help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/CONFIG (a run's "
                   "model is named after its configuration)")
@click.option(*option_names("data_dir"), "data_dir", metavar="DIR", default=None, help="as for train")
@click.option("--experiment", metavar="NAME", default=None, help="as for train")
@click.option("--backend", type=click.Choice(configs.BACKENDS), default=configs.DEFAULT_BACKEND,
              show_default=True, help="Keras backend that loads the model (any backend's model loads)")
@setting_option("system_metrics")
def evaluate_command(model_uri, data_dir, experiment, backend, system_metrics):
    """Evaluate a logged or registered model on the 10,000 test images."""
    from fmtrain.cli import output
    from fmtrain.workflows import evaluate

    given = {"system_metrics": system_metrics} if system_metrics is not None else {}
    seconds = configs.resolve(overrides=given).system_metrics  # checked as a training run's
    outcome = evaluate.evaluate(model_uri, data_dir=data_dir, experiment=experiment, backend=backend,
                                system_metrics=seconds)
    click.echo(output.evaluation_report(outcome))
    for warning in outcome.warnings:
        click.echo(f"fmtrain: warning: {warning}", err=True)
    return 0


@click.command("predict")
@click.option(*option_names("model_uri"), "model_uri", required=True, metavar="URI",
              help="models:/NAME@ALIAS, models:/NAME/VERSION or runs:/RUN_ID/CONFIG")
@click.argument("pictures", nargs=-1, required=True, metavar="IMAGE...")
@click.option("--top", type=click.IntRange(1, 10), default=3, show_default=True,
              help="how many classes to print per image")
def predict_command(model_uri, pictures, top):
    """Classify pictures (PNG or JPEG of any size, or .npy arrays of 28x28 images) with a
    logged or registered model, as its served python_function flavor answers."""
    from fmtrain.cli import output
    from fmtrain.workflows import predict

    for answer in predict.predict(model_uri, list(pictures), top=top):
        click.echo(output.prediction_line(answer))
    return 0


@click.command("reap")
@click.option("--stale-after", "stale_after", type=click.FloatRange(min=0), default=120.0,
              show_default=True, metavar="SECONDS",
              help="a RUNNING run is stale when its heartbeat is older than this")
@click.option("--experiment", metavar="NAME", default=None, help="only this experiment [default: all]")
@click.option("--yes", is_flag=True, help="end the stale runs KILLED (without it, only list them)")
def reap_command(stale_after, experiment, yes):
    """List runs left RUNNING by a process that died (SIGKILL, out of memory); --yes ends them."""
    from fmtrain.workflows import reap

    stale, waiting = reap.reap(experiment, stale_after, act=yes)
    for line in waiting:
        click.echo(line)
    for run in stale:
        click.echo(f"{run.run_id}  {run.name}  no heartbeat for {run.age:.0f} s"
                   + ("  -> KILLED" if yes else ""))
    if not stale:
        click.echo(f"no RUNNING run has been silent for more than {stale_after:.0f} s")
    elif not yes:
        click.echo(f"{len(stale)} stale run(s); end them KILLED with `fmtrain reap --yes`")
    return 0


@click.command("sync")
@click.argument("run_id", required=False, metavar="[RUN_ID]")
@click.option("--all", "every", is_flag=True, help="replay every journal that waits")
def sync_command(run_id, every):
    """Replay the journal a run left while the tracking store was away (see docs/operations.md)."""
    from fmtrain.workflows import sync

    synced = sync.sync(run_id, every)
    for done in synced:
        click.echo(f"run {done.run_id}: {done.records} record(s) replayed; the run is {done.status}"
                   + ("" if done.status != "RUNNING" else
                      " (its process left before its end: `fmtrain reap --yes` ends it)"))
        if done.skipped_epochs or done.skipped:
            click.echo(f"run {done.run_id}: skipped {done.skipped_epochs} epoch(s) and {done.skipped} other record(s) "
                       "that the run, continued elsewhere, already holds")
        for where in done.torn:
            click.echo(f"fmtrain: warning: {where} was cut short (its process died, or its disk filled, "
                       "while writing it); the record was left out", err=True)
    if not synced:
        click.echo("no journal waits")
    return 0


# In the order `fmtrain --help` lists them after the training commands.
COMMANDS = [compare_command, report_command, register_command, evaluate_command, predict_command, reap_command, sync_command]
