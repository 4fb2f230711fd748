"""``fmtrain tune``: a search over the settings, one parent run and one nested run per trial.

Optuna decides (``tuning.study``): its TPE sampler chooses each trial's settings and its pruner
stops poor trials between epochs. The study lives in the tracking store (``tracking.studies``),
so a search whose driver was killed continues with ``--resume`` in the same parent run. The
trials run on the engine a sweep's children run on (``execution.engine``): one after another in
this process, or as Ray tasks on a local instance or a cluster. Each trial is
``workflows.train.train_run`` with the chosen settings (``workflows.search_trials``), so a
trial's run is exactly the run ``fmtrain train`` makes for those settings.
"""

from __future__ import annotations

import contextlib
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

from fmtrain.errors import RunStopped, Stopped, signal_description
from fmtrain.execution import engine, signals
from fmtrain.learning import configs, data
from fmtrain.tuning import space, trials
from fmtrain.tuning import study as studies
from fmtrain.tuning.trials import TrialRow
from fmtrain.workflows import search_record, search_trials
from fmtrain.workflows.search_trials import TrialJob
from fmtrain.workflows.train import register_finished

DEFAULT_MAX_RETRIES = 2


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
               resume: str | None = None, given: tuple[str, ...] = (),
               echo: Callable[[str], None] = print) -> SearchOutcome:
    """``fmtrain tune``: check everything, then run the search under one parent run.

    Settings given as ``overrides`` apply to every trial; the space's settings are sampled per
    trial (a setting in both is refused). ``--seed`` seeds both the sampler and every trial's
    training, so a search with the same seed and one trial at a time repeats itself. With
    ``resume`` (a search's parent run id), the search continues where its killed driver left it;
    ``given`` names the options given with it, of which only ``--trials`` may be.
    """
    from fmtrain.tracking import monitoring, runs, store, ui
    from fmtrain.tracking import studies as storages
    from fmtrain.tracking.records import Labels, SearchPlan

    if resume:
        store.open_store(select=False)
        plan, study_name, experiment_id, done = search_record.resumable(resume, trials_wanted, given)
        trials_wanted = max(trials_wanted, plan.trials) if "--trials" in given else plan.trials
        plan = SearchPlan(**{**plan.__dict__, "trials": trials_wanted})
        _point_project_run(resume)
    else:
        plan = _checked_plan(overrides, config_name, space_path, trials_wanted, max_concurrent, time_budget)
        study_name, experiment_id, done = f"fmtrain-search-{uuid.uuid4().hex[:12]}", None, 0
    searched = space.parse_space(plan.space)
    base = configs.resolve(plan.config, {**plan.settings, "seed": plan.seed})
    placement = engine.plan(plan.max_concurrent if resume else max_concurrent,
                            ray_address or plan.ray_address, trials_wanted - done,
                            option="--max-concurrent", what="trials")
    store.check_cluster_store(placement.address)
    splits = data.load_splits(data_dir, base.limit)
    if not resume:
        plan = SearchPlan(**{**plan.__dict__, "max_concurrent": placement.workers,
                             "ray_address": placement.address})
        store.open_store(experiment)
    else:
        store.open_store(experiment_id=experiment_id)
    names, start = list(searched), time.perf_counter()
    description = (f"Search of {trials_wanted} trials over {', '.join(names)} around the "
                   f"`{plan.config}` configuration. (The trials table comes when it ends.)")
    # Ray starts (or the cluster is joined) before the parent run exists: a cluster that cannot
    # be reached is one line and no run.
    with engine.start(placement, store.worker_environment(), setup=monitoring.name_node,
                      max_retries=max_retries) as runner, signals.deferred(), \
            runs.tracked_run("tune", plan.params(), labels=Labels(config=plan.config, study=study_name),
                             run_id=resume, description=description, system_metrics=base.system_metrics) \
            as parent_id:
        study = studies.open_study(storages.storage(store.get_run(parent_id).info.experiment_id),
                                   study_name, plan.seed, existing=bool(resume))
        if resume:
            search_record.settle_leftovers(parent_id, study, echo)
        echo(f"search {parent_id}: {trials_wanted} trials, {placement.describe()}"
             + (f"; {done} ended before, {trials_wanted - done} to go" if resume else ""))
        deadline = time.time() + plan.time_budget if plan.time_budget else None
        attempt = uuid.uuid4().hex[:12]
        jobs = _jobs(study, base, plan.config, parent_id, space.optuna_distributions(searched),
                     trials_wanted - done, deadline, verbose, attempt)
        shown = done
        try:
            with contextlib.closing(runner.run(search_trials.run_trial, jobs, splits,
                                               lambda job: trials.trial_name(job.number))) as ended:
                for outcome in ended:
                    result = (outcome.value if outcome.error is None
                              else search_trials.record_lost(outcome.job, outcome.error))
                    with contextlib.suppress(Exception):  # the run is the record; the study follows it
                        studies.tell(study, outcome.job.trial, result.val_loss, result.stopped_by,
                                     failed=result.error is not None)
                    shown += 1
                    settings = {name: configs.format_value(search_trials.plain(outcome.job.settings.get(name)))
                                for name in names}
                    echo(trials.trial_line(shown, trials_wanted, outcome.job.number, settings,
                                           trials.trial_end_text(result)))
        except Stopped as stop:
            lost = search_record.end_stopped_trials(parent_id, attempt, stop.signum)
            if not lost:
                raise
            raise RunStopped(f"{', '.join(lost)} {signal_description(stop.signum)}", None, stop.signum) from None
        rows = search_trials.trial_rows(parent_id, names)
        best = trials.best_row(rows)
        search_record.log_search(parent_id, rows, best, searched, seed=plan.seed)
    outcome = SearchOutcome(parent_id, rows, best, names, time.perf_counter() - start, link=ui.ui_link(parent_id))
    if register_best and best is not None:
        from fmtrain.tracking.registry import CHAMPION_ALIAS

        outcome.registered_version = register_finished(best.run_id, register_best, alias=alias or CHAMPION_ALIAS)
    return outcome


def _point_project_run(parent_id: str) -> None:
    """Under ``mlflow run . -e tune -P resume=ID``, MLflow made a run of its own for the command:
    it says which search it continued."""
    import os

    from fmtrain.tracking import logged

    project_run = os.environ.get("MLFLOW_RUN_ID")
    if project_run and project_run != parent_id:
        logged.point_to_resumed(project_run, parent_id)
        os.environ.pop("MLFLOW_RUN_ID")  # the search's parent is its own run, not MLflow's


def _jobs(study, base, config_name: str, parent_id: str, distributions: dict, count: int,
          deadline: float | None, verbose: int, attempt: str):
    """The search's next ``count`` trials, each asked of the study when a worker is free for it
    (after the outcomes before it were told), none once the time budget is spent."""
    for index in range(count):
        if deadline is not None and time.time() >= deadline:
            return
        trial = studies.ask(study, distributions)
        yield TrialJob(base, config_name, parent_id, trial.number, dict(trial.params), trial,
                       f"{attempt}-{index}", deadline, verbose)


def _checked_plan(overrides: dict, config_name: str, space_path, trials_wanted: int,
                  max_concurrent: int | None, time_budget: float | None):
    """What a new search was asked for, checked before anything starts."""
    import importlib.util

    from fmtrain.tracking.records import SearchPlan

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
    if importlib.util.find_spec("optuna") is None:
        raise ValueError("fmtrain tune chooses its trials' settings with Optuna, which is not installed; "
                         "install it with `pip install '.[ray]'` in fmtrain's checkout")
    settings = {key: configs.format_value(value) for key, value in typed.items() if key != "seed"}
    return SearchPlan(config_name, trials_wanted, base.seed, space.to_data(searched), settings,
                      max_concurrent or 0, time_budget)
