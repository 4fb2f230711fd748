"""Several configurations as nested child runs of one parent run, then their comparison.

Each child is made by ``workflows.train.train_run``, the function ``fmtrain train`` uses, so a
child and a single run hold the same params, metrics and artifacts. An engine (``execution.engine``)
decides where the children train: one after another in this process (``--workers 1``), or
several at once in Ray workers, locally or on a cluster; the parent stays in this process.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field

from fmtrain.analysis import comparison, descriptions
from fmtrain.analysis.comparison import SummaryRow
from fmtrain.errors import RunEnded, RunStopped, Stopped, one_line, signal_description
from fmtrain.execution import engine, signals
from fmtrain.learning import backend, configs, data
from fmtrain.workflows import compare, resume_run, sweep_children
from fmtrain.workflows.train import register_finished

# How often a child whose Ray worker died is run again on a live worker (--max_retries).
DEFAULT_MAX_RETRIES = 2


@dataclass
class SweepOutcome:
    """A finished sweep: the parent run, the summary rows, the best row and the failures."""

    parent_run_id: str
    rows: list[SummaryRow]
    best: SummaryRow | None
    failures: list[str] = field(default_factory=list)
    registered_version: str | None = None
    report: object = None  # workflows.report.ChapterReport, with several seeds
    link: object = None  # fmtrain.tracking.ui.UiLink: the runs view that holds the sweep


def parse_names(text: str | None) -> list[str]:
    """``a,b,c`` (or ``all``/nothing for every configuration) as a list of known names."""
    if not text or text.strip() == "all":
        return list(configs.CONFIGS)
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in configs.CONFIGS]
    if unknown or not names:
        raise ValueError(f"unknown configuration {', '.join(unknown) or repr(text)}; "
                         f"choose from: {', '.join(configs.CONFIGS)}")
    return names


def child_name(config: str, seed: int, seeds: list[int]) -> str:
    """``adam`` with one seed, ``adam/seed-43`` with several."""
    return config if len(seeds) == 1 else f"{config}/seed-{seed}"


def run_sweep(requested: str | None, overrides: dict, *, data_dir=None, experiment=None,
              register_best: str | None = None, verbose: int = 0, resume: str | None = None,
              seeds: str | None = None, parent_name: str = "sweep", workers: int | None = None,
              ray_address: str | None = None, share_epochs: bool | None = None,
              max_retries: int = DEFAULT_MAX_RETRIES, echo: Callable[[str], None] = print) -> SweepOutcome:
    """Train each configuration of ``requested`` (``a,b,c`` or ``all``) with ``overrides`` and
    each seed of ``seeds`` (a count or a list, see configs.parse_seeds), each (configuration,
    seed) as a child of one parent run, ``workers`` at a time (see engine.plan; with
    ``ray_address``, on that Ray cluster).

    Settings that no configuration can take are refused before any run exists, and so is a
    cluster without a tracking server to share. A child that fails (an override its
    configuration cannot take, an error while training, a worker that dies) is FAILED or KILLED
    and the sweep goes on; a signal stops it, leaving every run ended. With ``resume`` (a parent
    run id), the configurations, seeds and settings are read from that parent, its FINISHED
    children are kept, and the others run again in the same parent. With several seeds, the
    chapter report is logged on the parent at the end. ``share_epochs`` (by default with
    several seeds) trains each family of configurations once and replays its epochs for the
    others (``learning.trajectory``): the same runs, fewer fits.
    """
    from fmtrain.tracking import monitoring, runs, store, ui
    from fmtrain.tracking.records import Labels

    kept: dict[tuple[str, int], str] = {}
    lost: dict[tuple[str, int], str] = {}
    experiment_id = None
    if resume:
        store.open_store(experiment, select=False)
        if seeds:
            raise ValueError("--resume takes the seeds from the sweep's parent run; give no --seeds")
        requested, overrides, seeds, kept, experiment_id = _resumable(resume, requested, overrides, echo)
        lost = resume_run.lost_children(resume)
    names = parse_names(requested)
    typed = {key: configs.parse_value(key, value) for key, value in overrides.items()}
    seed_list = configs.parse_seeds(seeds, typed.get("seed", configs.DEFAULT.seed))
    if len(seed_list) > 1 and "backend" not in typed and not resume:
        # Several seeds: the fastest backend installed (the parent's params and report say which).
        typed["backend"] = backend.multi_seed_default()
    takes = {name: _takes(name, typed) for name in names}
    if not any(takes.values()):
        configs.resolve(names[0], typed)  # raises the first configuration's error
    pairs = [(name, seed) for name in names for seed in seed_list]
    to_train = [pair for pair in pairs if pair not in kept and takes[pair[0]]]
    placement = engine.plan(workers, ray_address, len(to_train))
    store.check_cluster_store(placement.address)
    splits = data.load_splits(data_dir, typed.get("limit") or 0)
    store.open_store(experiment, experiment_id=experiment_id)
    params = {} if resume else {"configs": requested or "all",  # a resumed parent has its params
                                **{key: configs.format_value(value) for key, value in typed.items()}}
    if seeds is not None and not resume:  # as given (`mlflow run -P seeds=5` logged it so)
        params["seeds"] = str(seeds).strip()
    share_epochs = len(seed_list) > 1 if share_epochs is None else share_epochs
    if not resume:
        params["workers"] = str(workers or engine.default_workers())
        params["share_epochs"] = configs.format_value(share_epochs)
        if placement.address:
            params["ray_address"] = placement.address
    labels = Labels(sweep_configs=tuple(names), sweep_seeds=tuple(seed_list))
    started = descriptions.sweep_description(names, typed, "(The summary table comes when the sweep ends.)",
                                             None, seeds=seed_list)
    attempt = uuid.uuid4().hex[:12]  # this invocation's jobs' keys
    with engine.start(placement, store.worker_environment(), setup=monitoring.name_node,
                      max_retries=max_retries) as runner, signals.deferred(), \
            runs.tracked_run(parent_name, params, labels=labels, run_id=resume, description=started,
                             system_metrics=typed.get("system_metrics", configs.DEFAULT.system_metrics)) \
            as parent_id:
        jobs = [sweep_children.ChildJob(index, name, seed, child_name(name, seed, seed_list), parent_id,
                                        typed, f"{attempt}-{index}", kept.get((name, seed)), verbose,
                                        resume_run_id=lost.get((name, seed)))
                for index, (name, seed) in enumerate(pairs)]
        if runner.parallel:
            echo(f"training {len(to_train)} runs {placement.describe()}")
        failures = _run_children(runner, jobs, splits, echo, share_epochs)
        signals.check()  # a signal during the last child: the parent ends as it says
        rows, figure = compare.compare([parent_id])
        best = comparison.best_row(rows)
        compare.log_comparison(parent_id, rows, figure)
    result = SweepOutcome(parent_id, rows, best, failures, link=ui.ui_link(parent_id))
    if len(seed_list) > 1 and any(row.finished for row in rows):
        from fmtrain.workflows import report

        try:
            result.report = report.report(parent_id)
        except Exception as error:  # noqa: BLE001 - the runs are safe; say which parent to report on
            raise RunEnded(f"sweep {parent_id} finished, but its report failed: {one_line(error)}; "
                           f"rebuild it with `fmtrain report {parent_id}`", parent_id) from error
    if register_best and best:
        from fmtrain.tracking.registry import CHAMPION_ALIAS

        result.registered_version = register_finished(best.run_id, register_best, alias=CHAMPION_ALIAS)
    return result


def _takes(name: str, settings: dict) -> bool:
    """Whether configuration ``name`` can take ``settings`` (a child that cannot is FAILED)."""
    try:
        configs.resolve(name, settings)
    except ValueError:
        return False
    return True


def _run_children(runner, jobs: list[sweep_children.ChildJob], splits: data.Splits,
                  echo: Callable[[str], None], share_epochs: bool = False) -> list[str]:
    """Each child of ``jobs`` on the ``runner`` engine, with a line as each one ends; returns the
    names of those that failed.

    A parallel engine gets only the children that train; kept and refused ones are settled here
    first. With ``share_epochs``, the children go in families (``sweep_children.families``). When a
    signal stops a parallel sweep, its tasks are cancelled and the children they leave are ended
    as the signal says, and named in the RunStopped raised.
    """
    failures: list[str] = []

    def show(job: sweep_children.ChildJob, result: sweep_children.ChildResult) -> None:
        label = f"[{job.index + 1}/{len(jobs)}] {job.run_name}"
        if result.kept:
            echo(f"{label} ... kept (run {result.run_id} FINISHED)")
        elif result.error is not None:
            failures.append(job.run_name)
            echo(f"{label} ... FAILED: {result.error}")
        else:
            echo(f"{label} ... val_loss {result.final_val_loss:.3f}, {result.seconds:.0f} s")

    sent = [job for job in jobs if job.trains] if runner.parallel or share_epochs else jobs
    if runner.parallel:  # the longest first, so that no worker is left with a long run at the end
        sent = sorted(sent, key=lambda job: -job.config().epochs)
    for job in jobs:
        if job not in sent:
            show(job, sweep_children.run_child(job, splits))
    groups = sweep_children.families(sent) if share_epochs else [[job] for job in sent]
    if len(groups) < len(sent):
        echo(f"shared epochs: {len(sent)} runs from {len(groups)} fits (each follower replays its "
             "leader's epochs)")
    try:
        with contextlib.closing(runner.run(sweep_children.run_family, groups, splits, _group_name)) as done:
            for outcome in done:
                results = (outcome.value if outcome.error is None
                           else [sweep_children.record_lost(job, outcome.error) for job in outcome.job])
                for job, result in zip(outcome.job, results, strict=True):
                    show(job, result)
    except Stopped as stop:
        ended = _end_stopped_children(jobs, stop.signum) if runner.parallel else []
        if not ended:
            raise
        raise RunStopped(f"{', '.join(ended)} {signal_description(stop.signum)}", None,
                         stop.signum) from None
    return failures


def _group_name(group: list[sweep_children.ChildJob]) -> str:
    """A Ray task's name: its child's, or its leader's and how many follow it."""
    return group[0].run_name + (f"+{len(group) - 1}" if len(group) > 1 else "")


def _end_stopped_children(jobs: list[sweep_children.ChildJob], signum: int) -> list[str]:
    """After ``signum`` stopped a parallel sweep and its tasks were cancelled, end as that signal
    says the children of ``jobs`` still RUNNING (their workers were killed) or that the cancel
    ended (it is a Ctrl-C to a worker).

    Returns ``run ID (name)`` for each. A store that cannot be reached ends the list early.
    """
    import signal

    from fmtrain.tracking import lost_runs, queries
    from fmtrain.tracking.records import Cause, Ending, status_for

    keys = {job.key for job in jobs}
    ended: list[str] = []
    with contextlib.suppress(Exception):
        mine = [child for child in queries.children(jobs[0].parent_run_id) if child.labels.job in keys]
        # A child the cancel ended (as a Ctrl-C) is told which signal it was.
        for child in lost_runs.settle(mine, status_for(signum), Ending(Cause.SIGNAL, signal_description(signum)),
                                      replacing=signal_description(signal.SIGINT)):
            ended.append(f"run {child.run_id} ({child.name})")
    return ended


def _resumable(parent_id: str, requested, overrides, echo):
    """Read a sweep to resume: its configurations, settings and seeds, its FINISHED children by
    (configuration, seed) and its experiment; children left RUNNING by a dead process are ended
    KILLED first."""
    import os

    from fmtrain.tracking import lost_runs, queries

    if requested or overrides:
        raise ValueError("--resume takes the configurations and settings from the sweep's parent "
                         "run; give no --configs or settings with it")
    if os.environ.get("MLFLOW_RUN_ID"):
        raise ValueError("--resume reopens a sweep's own parent run; run it with `fmtrain sweep`, "
                         "not under `mlflow run`")
    parent = queries.run_record(parent_id)
    if not parent.labels.is_sweep:
        raise ValueError(f"run {parent_id} is not a sweep's parent run")
    if parent.status == "RUNNING" and not lost_runs.stale([parent]):
        raise ValueError(f"sweep {parent_id} is still running (its heartbeat is recent); stop "
                         "it before resuming, or wait until it is stale")
    children = queries.children(parent_id)
    for child in children:  # its records are not all in the store yet: sync them first
        if child.status == "RUNNING" and (folder := lost_runs.unsynced_journal(child)):
            raise ValueError(f"run {child.run_id} ({child.name}) has records waiting in journal {folder}; "
                             f"run `fmtrain sync {child.run_id}` before resuming")
    for stale in lost_runs.stale(children, 0):
        lost_runs.settle([stale.record], "KILLED", lost_runs.process_lost(stale.age))
        echo(f"ended run {stale.run_id} ({stale.name}) KILLED: its process is gone")
    kept = {(child.config, child.seed): child.run_id for child in children if child.status == "FINISHED"}
    seeds = ",".join(map(str, parent.labels.sweep_seeds)) or parent.shared_settings.get("seed")
    seeds = f"{seeds}," if seeds and "," not in seeds else seeds  # one seed is a list of one
    return ",".join(parent.labels.sweep_configs), parent.shared_settings, seeds, kept, parent.experiment_id
