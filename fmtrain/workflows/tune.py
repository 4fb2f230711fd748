"""A search: one parent run, one nested child run per trial, on Ray Tune (see tune_engine).

Each trial is ``workflows.train.train_run`` with the settings the sampler chose, so a trial's run
is exactly the run ``fmtrain train`` makes for those settings, nested under the search's parent
and tagged with the search and its trial number. A trial that the search stops early (ASHA, the
time budget) ends FINISHED at that epoch, tagged, with its curves so far.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import time
from collections.abc import Callable
from dataclasses import dataclass

from fmtrain.analysis import tables
from fmtrain.errors import RunStopped, Stopped, signal_description
from fmtrain.execution import engines, raystart, signals
from fmtrain.learning import configs, data
from fmtrain.tuning import space, trials
from fmtrain.tuning.trials import TrialRow
from fmtrain.workflows.retries import DEFAULT_MAX_RETRIES, retry_line
from fmtrain.workflows.search_trial import TrialJob, plain, run_trial
from fmtrain.workflows.train import register_finished

SPACE_FILE = "space.json"
TRIALS_CSV = "trials.csv"
TRIALS_MD = "trials.md"
HISTORY_FIGURE = "optimisation-history.png"
IMPORTANCE_FIGURE = "param-importance.png"


@dataclass
class SearchOutcome:
    """A finished search: its parent run, its trials, the best one and where to see them."""

    parent_run_id: str
    rows: list[TrialRow]
    best: TrialRow | None
    names: list[str]
    seconds: float
    registered_version: str | None = None
    link: object = None  # fmtrain.tracking.ui.UiLink


def run_search(overrides: dict, *, config_name: str = configs.DEFAULT_CONFIG, space_path=None,
               trials_wanted: int = 30, max_concurrent: int | None = None,
               time_budget: float | None = None, ray_address: str | None = None, data_dir=None,
               experiment: str | None = None, register_best: str | None = None,
               alias: str | None = None, verbose: int = 0, max_retries: int = DEFAULT_MAX_RETRIES,
               echo: Callable[[str], None] = print) -> SearchOutcome:
    """``fmtrain tune``: check everything, then run the search under one parent run.

    Settings given as ``overrides`` apply to every trial; the space's settings are sampled per
    trial (a setting in both is refused). ``--seed`` seeds both the sampler and every trial's
    training, so a search with the same seed and one trial at a time repeats itself.
    """
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import runs, store, ui

    searched = space.load_space(space_path)
    typed = {key: configs.parse_value(key, value) for key, value in overrides.items()}
    both = sorted(set(searched) & set(typed))
    if both:
        raise ValueError(f"{', '.join(both)} is searched (see --show-space) and also given as a "
                         "setting; drop the setting, or the range from the space (--space FILE)")
    if trials_wanted < 1:
        raise ValueError(f"trials must be at least 1, got {trials_wanted}")
    if time_budget is not None and time_budget <= 0:
        raise ValueError(f"time_budget must be a positive number of seconds, got {time_budget}")
    base = configs.resolve(config_name, typed)
    if not base.validation:
        raise ValueError("a search compares trials by val_loss: it needs validation=true")
    space.check_against(searched, base)
    if not engines.ray_installed() or importlib.util.find_spec("optuna") is None:
        raise ValueError("fmtrain tune runs its trials on Ray Tune with Optuna, which are not "
                         "installed; install them with `pip install '.[ray]' in fmtrain's checkout`")
    placement = engines.plan_on_ray(max_concurrent, ray_address, trials_wanted)
    store.check_cluster_store(placement.address)
    splits = data.load_splits(data_dir, base.limit)
    store.open_store(experiment)
    names = list(searched)
    params = {"config": config_name, "trials": str(trials_wanted),
              "max_concurrent": str(placement.workers), "seed": str(base.seed),
              "space": json.dumps(space.to_data(searched), separators=(",", ":")),
              **{key: configs.format_value(value) for key, value in typed.items() if key != "seed"}}
    if time_budget is not None:
        params["time_budget"] = configs.format_value(time_budget)
    if placement.address:
        params["ray_address"] = placement.address
    start = time.perf_counter()
    description = (f"Search of {trials_wanted} trials over {', '.join(names)} around the "
                   f"`{config_name}` configuration. (The trials table comes when it ends.)")
    raystart.ray_environment(local=placement.address is None)  # before tune_engine imports Ray
    try:
        from fmtrain.tuning import engine
    except ImportError as error:
        raise ValueError(f"Ray Tune cannot be imported ({error}); install it with "
                         "`pip install '.[ray]' in fmtrain's checkout`") from None

    # Ray starts (or the cluster is joined) before the parent run exists: a cluster that cannot
    # be reached is one line and no run.
    with engine.started(placement, store.worker_environment()) as storage, signals.deferred(), \
            runs.tracked_run("tune", params, tags={tags.CONFIG_TAG: config_name},
                             description=description, system_metrics=base.system_metrics) as parent_id:
        job = TrialJob(base, config_name, parent_id, verbose)
        echo(f"search {parent_id}: {trials_wanted} trials, {placement.describe()}")

        shown: set[int] = set()

        def show(count: int, end) -> None:
            shown.add(end.number)
            if end.error is not None:  # the run holds the error as its own code recorded it
                with contextlib.suppress(Exception):
                    end.error = _trial_error(parent_id, end.number) or end.error
            settings = {name: configs.format_value(plain(end.config.get(name))) for name in names}
            echo(trials.trial_line(count, trials_wanted, end.number, settings, trials.trial_end_text(end)))

        def retried(number: int, attempt: int) -> None:
            echo(retry_line(trials.trial_name(number), "its Ray worker process died", attempt, max_retries))

        try:
            _, signum = engine.search(
                run_trial, job, splits, storage=storage, distributions=space.optuna_distributions(searched),
                trials=trials_wanted, placement=placement, seed=base.seed, max_epochs=base.epochs,
                time_budget=time_budget, max_retries=max_retries, echo=show, retried=retried)
        except BaseException as error:  # whatever happened, no trial's run is left RUNNING
            stop, lost = (error.signum if isinstance(error, Stopped) else None), []
            with contextlib.suppress(Exception):  # the search's own error is the one to report
                lost = _end_lost_trials(parent_id, stop, finished=False)
            if stop is not None and lost:
                raise RunStopped(f"{', '.join(lost)} {signal_description(stop)}", None, stop) from None
            raise
        lost = _end_lost_trials(parent_id, signum)
        if signum is not None and lost:
            raise RunStopped(f"{', '.join(lost)} {signal_description(signum)}", None, signum)
        if signum is not None:  # every trial ended its own run (stopped at the end of a step)
            raise Stopped(signum)
        rows = trial_rows(parent_id, names)
        for row in rows:  # trials that ended as the search did (its time budget) get their line too
            if row.number not in shown:
                shown.add(row.number)
                echo(trials.trial_line(len(shown), trials_wanted, row.number, row.settings, row.outcome))
        best = trials.best_row(rows)
        log_search(parent_id, rows, best, searched, seed=base.seed)
    outcome = SearchOutcome(parent_id, rows, best, names, time.perf_counter() - start,
                            link=ui.ui_link(parent_id))
    if register_best and best is not None:
        outcome.registered_version = register_finished(best.run_id, register_best,
                                                       alias=alias or tags.CHAMPION_ALIAS)
    return outcome


def _trial_error(parent_id: str, number: int) -> str | None:
    """``run ID (trial-NN) failed: ...`` for a failed trial, from its run's error tag."""
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import queries

    for child in queries.child_states(parent_id, {tags.TRIAL_TAG: str(number)}):  # its own run only
        if tags.ERROR_TAG in child.tags:
            return f"run {child.run_id} ({child.name}) failed: {child.tags[tags.ERROR_TAG]}"
    return None


def _end_lost_trials(parent_id: str, signum: int | None, finished: bool = True) -> list[str]:
    """Trials whose run is still RUNNING once the search is over lost their worker (killed, out
    of memory, stopped by a signal, or by the search's own error): ended KILLED (FAILED for
    Ctrl-C, or after an error of the search), with the reason."""
    from fmtrain.tracking import abandoned, queries, runs

    if signum is not None:
        status, reason = runs.status_for(signum), signal_description(signum)
    elif not finished:
        status, reason = "FAILED", "the search stopped with an error of its own"
    else:
        status, reason = "KILLED", "its Ray worker process died"
    return [f"run {child.run_id} ({child.name})" for child in queries.child_states(parent_id)
            if child.status == "RUNNING"
            and abandoned.end_left_open(child.run_id, status, reason, child.name)]


def trial_rows(parent_id: str, names: list[str]) -> list[TrialRow]:
    """The search's trials as the store holds them."""
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import queries

    rows = []
    for record in queries.child_records(parent_id):  # no curves: a row needs none
        number = record.tags.get(tags.TRIAL_TAG)
        pruned = record.tags.get(tags.PRUNED_EPOCH_TAG)
        rows.append(TrialRow(
            number=int(number) if number is not None else -1, run_id=record.run_id,
            status=record.status, settings={name: record.params.get(name, "-") for name in names},
            final_val_loss=record.scores.final_val_loss,
            final_val_accuracy=record.scores.final_val_accuracy, epochs_run=record.scores.epochs_run,
            pruned_epoch=int(pruned) if pruned is not None else None,
            stopped_by=record.tags.get(tags.STOPPED_BY_TAG, ""), error=record.error))
    return sorted(rows, key=lambda row: row.number)


def log_search(parent_id: str, rows: list[TrialRow], best: TrialRow | None, searched: space.Space,
               seed: int = 0) -> None:
    """The search's record on its parent: tables, space, figures, the best trial's settings and
    scores, and a description."""
    from fmtrain.analysis import figures
    from fmtrain.tracking import logged
    from fmtrain.tracking import names as tags

    names = list(searched)
    finished = [row for row in rows if row.status == "FINISHED" and row.final_val_loss is not None]
    history = figures.history_figure([(row.number, row.final_val_loss,
                                     "complete" if row.complete else row.stopped_by) for row in finished])
    # Importance over the complete trials only: a pruned trial's loss is an early epoch's.
    scored = [({name: configs.parse_value(name, row.settings[name]) for name in names}, row.final_val_loss)
              for row in finished if row.complete]
    importance = space.importances(searched, scored, seed=seed)
    markdown = trials.to_markdown(rows, names, best)
    counts = {"trials_complete": sum(row.complete for row in rows),
              "trials_pruned": sum(row.stopped_by == "pruned" for row in rows),
              "trials_failed": sum(row.status != "FINISHED" for row in rows)}
    metrics, params, marks = dict(counts), {}, {}
    if best is not None:
        metrics.update(best_final_val_loss=best.final_val_loss,
                       best_final_val_accuracy=best.final_val_accuracy, best_trial=best.number)
        params = {f"best_{name}": value for name, value in best.settings.items()}
        marks = {tags.BEST_TAG: best.run_id}
    lines = []
    if best is not None:
        lines += [f"Best: trial {best.number} ({tables.settings_text(best.settings, between=' ', rounded=True)}), "
                  f"final val_loss {best.final_val_loss:.4f}, val_accuracy {best.final_val_accuracy:.4f} "
                  f"(run `{best.run_id}`, tag {tags.BEST_TAG}).", ""]
    lines += [f"{len(rows)} trials: {counts['trials_complete']} complete, {counts['trials_pruned']} "
              f"pruned by ASHA, {counts['trials_failed']} failed or killed. Figures: "
              f"`{HISTORY_FIGURE}`, `{IMPORTANCE_FIGURE}` (Artifacts); the space: `{SPACE_FILE}`.", ""]
    if importance:
        lines += ["Importance for the complete trials' val_loss (fANOVA): "
                  + ", ".join(f"{name} {value:.2f}" for name, value in importance.items()) + ".", ""]
    lines.append(markdown)
    logged.log_search(parent_id, texts={TRIALS_CSV: trials.to_csv(rows, names), TRIALS_MD: markdown,
                                         SPACE_FILE: json.dumps(space.to_data(searched), indent=2)},
                       figures={HISTORY_FIGURE: history,
                                IMPORTANCE_FIGURE: figures.importance_figure(importance)},
                       metrics=metrics, params=params, tags=marks, description="\n".join(lines))

