"""``fmtrain train --resume RUN_ID``: continue a run lost with its process, in the same run, from
the state its last completed epoch left in the store (``tracking.state_artifacts``).

A run resumes when it ended KILLED, or FAILED because its process was lost (a reaped run, a dead
Ray worker, a Ctrl-C, a command that ``mlflow run`` saw die: its ending's cause says so), or
when it is RUNNING with a stale heartbeat (``reap``'s rule). It is
refused, in one line and with the run unchanged, when it is FINISHED, RUNNING with a live
heartbeat, without a state, or when its settings or its data's digest differ from what this code
would use. The resumed run trains the remaining epochs on the same step axis and ends as an
uninterrupted run would: the same params, artifacts and description, and its model registered
when the run was started with ``--register_as``.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fmtrain.learning import configs, data
from fmtrain.learning.configs import TrainConfig


@dataclass
class ResumePlan:
    """A run that may resume: its configuration, data, where it stood, and its run's records."""

    config: TrainConfig
    name: str  # the configuration's
    run_name: str
    splits: data.Splits
    point: object  # tracking.state_artifacts.ResumePoint
    parent_run_id: str | None
    register_as: str | None


def plan(run_id: str, overrides: dict | None, folder: Path, *, data_dir=None,
         config_name: str | None = None, splits: data.Splits | None = None) -> ResumePlan:
    """Check that run ``run_id`` may resume and read what it needs (its state into ``folder``).

    ``overrides`` and ``config_name``: what the command line gave; each must equal the run's.
    ``splits``: the data already loaded (a sweep's), else loaded from ``data_dir``.
    Raises ValueError (bad input: nothing changed) for each refusal.
    """
    from fmtrain.tracking import journal, lost_runs, queries
    from fmtrain.tracking import state_artifacts as states

    run = queries.run_record(run_id)
    label = f"run {run_id} ({run.name})"
    error = run.error
    if run.status == "FINISHED":
        raise ValueError(f"{label} is FINISHED: there is nothing to resume")
    if run.status == "RUNNING":
        if not lost_runs.stale([run]):
            raise ValueError(f"{label} is RUNNING and its process shows life (heartbeat within "
                             f"{lost_runs.DEFAULT_STALE_AFTER:.0f} s): stop it, or resume it once it is stale")
        error = error or "process gone: no heartbeat (killed, out of memory or power loss)"
        waiting = lost_runs.unsynced_journal(run)
        if waiting is not None and not journal.Journal(run_id, waiting).replay():
            raise ValueError(f"{label} has records waiting in journal {waiting} and the store "
                             f"cannot take them yet; resume it once the store is back")
    # A FAILED run without fmtrain's ending is one whose process died under `mlflow run`, which
    # ends its run FAILED when the command dies by a signal.
    elif run.status == "FAILED" and run.ending is not None and not run.ending.resumable:
        raise ValueError(f"{label} FAILED on its own ({error}); only a run "
                         "lost with its process resumes")
    name = run.config
    if config_name is not None and config_name != name:
        raise ValueError(f"{label} trained configuration {name}, not {config_name}; --resume takes "
                         "the run's own")
    config = _run_config(label, name, run.settings)
    for key, value in (overrides or {}).items():
        if configs.parse_value(key, value) != getattr(config, key):
            raise ValueError(f"{label} has {key}={configs.format_value(getattr(config, key))}, not "
                             f"{value}: --resume continues the run with its own settings")
    splits = splits or data.load_splits(data_dir, config.limit)
    logged = states.data_digests(run_id)
    for context, images, labels in (("training", splits.x_train, splits.y_train),
                                    ("validation", splits.x_val, splits.y_val)):
        if logged.get(context) != data.digest(images, labels):
            raise ValueError(f"{label}'s {context} data has digest {logged.get(context)}, the data "
                             f"found now {data.digest(images, labels)} ({splits.source}): give the "
                             "run's data (--data_dir)")
    state = states.download_state(run_id, folder)
    if state is None:
        raise ValueError(f"{label} has no resumable state in its artifacts "
                         "(resume/): it cannot resume")
    if state.settings != config.to_params():
        raise ValueError(f"{label}'s resumable state was saved with other settings than the run's")
    why = error or f"{run.status} without fmtrain.error (its command died under `mlflow run`)"
    point = states.ResumePoint(run_id, state, why, states.logged_epochs(run_id))
    return ResumePlan(config, name, run.name, splits, point, run.parent_id, run.labels.register_as)


def child_point(run_id: str, config: TrainConfig, splits: data.Splits, folder: Path):
    """Where a sweep's lost child ``run_id`` stood (a ResumePoint, its state in ``folder``), or
    None when it cannot resume (no state: it trains anew, as a new child)."""
    try:
        chosen = plan(run_id, None, folder, splits=splits)
    except ValueError:
        return None
    return chosen.point if chosen.config == config else None


def lost_children(parent_id: str) -> dict[tuple[str, int], str]:
    """The latest child of each (configuration, seed) of sweep ``parent_id`` that ended KILLED or
    FAILED: ``sweep --resume`` continues it in its own run when it was lost with its process and
    left a state (``child_point``), and trains it anew otherwise."""
    from fmtrain.tracking import queries

    latest = {(c.config, c.seed): c for c in queries.children(parent_id)}
    return {key: c.run_id for key, c in latest.items() if c.status in ("KILLED", "FAILED")}


def _run_config(label: str, name: str, params: dict[str, str]) -> TrainConfig:
    """The configuration the run logged, as this code resolves it; ValueError when they differ."""
    settings = {knob.name: params[knob.name] for knob in configs.knobs() if knob.name in params}
    missing = [knob.name for knob in configs.knobs() if knob.name not in params]
    try:
        config = configs.resolve(name, settings)
    except ValueError as error:
        raise ValueError(f"{label}'s settings do not resolve with this code: {error}") from None
    differ = missing + [key for key in settings if not _same(key, settings[key], getattr(config, key))]
    if differ:
        raise ValueError(f"{label}'s settings differ from what this code would use "
                         f"({', '.join(differ)}): it cannot resume exactly")
    return config


def _same(key: str, logged: str, value) -> bool:
    """Whether a logged param means ``value`` (``mlflow run`` logs its parameters as given: ``2``
    for 2.0)."""
    try:
        return configs.parse_value(key, logged.strip("'\"")) == value
    except ValueError:
        return False


def resume(run_id: str, overrides: dict | None = None, *, data_dir=None, config_name: str | None = None,
           verbose: int = 0, keep_state: bool = False, refused: dict | None = None, echo=print):
    """``fmtrain train --resume RUN_ID``: check, then continue the run (saying from which epoch
    with ``echo``); returns its TrainOutcome. ``refused``: options given with --resume that it
    cannot take (by name; None when not given)."""
    from fmtrain.tracking import store, ui
    from fmtrain.workflows.train import train_run

    for option, value in (refused or {}).items():
        if value is not None and not (option == "--seeds" and str(value).strip() == "1"):
            raise ValueError(f"--resume continues one run as it was started; give no {option} with it")

    store.open_store(select=False)
    with tempfile.TemporaryDirectory(prefix="fmtrain-resume-") as folder:
        chosen = plan(run_id, overrides, Path(folder), data_dir=data_dir, config_name=config_name)
        _point_project_run(run_id)
        state = chosen.point.state
        echo(f"resuming run {run_id} ({chosen.run_name}) from epoch {state.epoch} of "
             f"{chosen.config.epochs}" + (" (training had stopped early)" if state.stopped else ""))
        outcome = train_run(chosen.config, chosen.name, chosen.splits, register_as=chosen.register_as,
                            verbose=verbose, parent_run_id=chosen.parent_run_id,
                            run_name=chosen.run_name, resume_from=chosen.point, keep_state=keep_state)
    outcome.link = ui.ui_link(outcome.run_id, run_page=True)
    return outcome


def _point_project_run(run_id: str) -> None:
    """Under ``mlflow run . -P resume=RUN_ID``, MLflow made a run of its own for the command: it
    says which run it resumed (the training goes on in that one)."""
    from fmtrain.tracking import logged

    project_run = os.environ.get("MLFLOW_RUN_ID")
    if project_run and project_run != run_id:
        logged.point_to_resumed(project_run, run_id)
