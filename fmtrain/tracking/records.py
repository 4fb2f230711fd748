"""Typed records of runs, the only shape in which runs cross the tracking boundary.

- ``Labels``: what fmtrain says a run is (its configuration, seed, sweep, search, trial, job),
  written as tags and read back from them here alone;
- ``Ending``: why a run ended, as a cause (a signal, its process lost, its worker dead, an error
  of its own) beside the reason a person reads, so that nothing matches a message's words;
- ``RunRecord``: one run as the store holds it.

The layers above read fields (``record.labels.seed``, ``record.ending.resumable``,
``record.scores.final_val_loss``), never a tag, param or metric by its key.
"""

from __future__ import annotations

import enum
import errno
import json
import signal
from dataclasses import dataclass, field

from fmtrain.errors import RunEnded, RunStopped, Stopped, WorkerDied, signal_description
from fmtrain.learning import configs
from fmtrain.learning.scores import Scores
from fmtrain.tracking import names


@dataclass(frozen=True)
class Labels:
    """What fmtrain says a run is; each field is one tag (None or empty: not set)."""

    config: str | None = None  # the configuration trained (a search's: the one its trials start from)
    seed: int | None = None  # a sweep child's seed
    job: str | None = None  # the job (a sweep's child, a search's trial) whose attempts make this run
    sweep_configs: tuple[str, ...] = ()  # on a sweep's parent: its configurations, in order
    sweep_seeds: tuple[int, ...] = ()  # on a sweep's parent: its seeds, in order
    study: str | None = None  # on a search's parent: the name of its Optuna study
    search: str | None = None  # on a trial: its search's parent run id
    trial: int | None = None  # on a trial: its number in the study
    epochs_from: str | None = None  # epochs replayed from this run's fit() (shared epochs)
    register_as: str | None = None  # the model name the run registers when it finishes
    evaluated: str | None = None  # on an evaluation run: the URI of the model it evaluated

    def tags(self) -> dict[str, str]:
        """The labels as tags (those set only)."""
        values = {
            names.CONFIG_TAG: self.config, names.SEED_TAG: self.seed, names.JOB_TAG: self.job,
            names.SWEEP_TAG: ",".join(self.sweep_configs) or None,
            names.SEEDS_TAG: ",".join(map(str, self.sweep_seeds)) or None,
            names.STUDY_TAG: self.study, names.SEARCH_TAG: self.search, names.TRIAL_TAG: self.trial,
            names.EPOCHS_FROM_TAG: self.epochs_from, names.REGISTER_TAG: self.register_as,
            names.EVALUATED_TAG: self.evaluated}
        return {key: str(value) for key, value in values.items() if value is not None}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Labels:
        def number(key):
            value = tags.get(key, "")
            return int(value) if value.lstrip("-").isdigit() else None

        return cls(config=tags.get(names.CONFIG_TAG), seed=number(names.SEED_TAG), job=tags.get(names.JOB_TAG),
                   sweep_configs=tuple(v for v in tags.get(names.SWEEP_TAG, "").split(",") if v),
                   sweep_seeds=tuple(int(v) for v in tags.get(names.SEEDS_TAG, "").split(",") if v.strip()),
                   study=tags.get(names.STUDY_TAG), search=tags.get(names.SEARCH_TAG),
                   trial=number(names.TRIAL_TAG), epochs_from=tags.get(names.EPOCHS_FROM_TAG),
                   register_as=tags.get(names.REGISTER_TAG), evaluated=tags.get(names.EVALUATED_TAG))

    @property
    def is_sweep(self) -> bool:
        return bool(self.sweep_configs)

    @property
    def is_search(self) -> bool:
        return self.study is not None


class Cause(enum.Enum):
    """Why a run ended other than by finishing."""

    SIGNAL = "signal"  # SIGINT, SIGTERM or SIGHUP asked the job to stop
    PROCESS_LOST = "process lost"  # its process died without a word (reap, resume, settle)
    WORKER_DIED = "worker died"  # its Ray worker (or the worker's node) died under it
    ERROR = "error"  # it failed on its own: an error, a diverged loss, bad settings


@dataclass(frozen=True)
class Ending:
    """How a run that did not finish ended: its cause and the reason a person reads."""

    cause: Cause
    reason: str

    @property
    def resumable(self) -> bool:
        """Lost with its process, not failed on its own: it may continue from its state."""
        return self.cause is not Cause.ERROR

    def tags(self) -> dict[str, str]:
        return {names.ERROR_TAG: self.reason, names.END_CAUSE_TAG: self.cause.value}

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> Ending | None:
        if names.ERROR_TAG not in tags:
            return None
        try:
            cause = Cause(tags.get(names.END_CAUSE_TAG, ""))
        except ValueError:  # a run of an fmtrain that recorded no cause: it failed, as far as anyone knows
            cause = Cause.ERROR
        return cls(cause, tags[names.ERROR_TAG])


def describe_error(error: BaseException) -> str:
    """The error as a run's ``fmtrain.error`` says it."""
    if isinstance(error, KeyboardInterrupt):
        return signal_description(signal.SIGINT)
    if isinstance(error, Stopped | RunEnded):
        return str(error)
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        where = error.filename or "the run's files"
        return f"no space left on device writing {where}"
    return f"{type(error).__name__}: {error}"[:5000]


def status_for(signum: int) -> str:
    """The status of a run that ``signum`` stopped: KILLED, FAILED for Ctrl-C (a person's decision
    to abandon the run, as MLflow itself records it)."""
    return "FAILED" if signum == signal.SIGINT else "KILLED"


def ending_for(error: BaseException) -> tuple[str, Ending]:
    """The status and Ending of a run that ``error`` ended."""
    signum = error.signum if isinstance(error, Stopped | RunStopped) else (
        signal.SIGINT if isinstance(error, KeyboardInterrupt) else None)
    if signum is not None:
        return status_for(signum), Ending(Cause.SIGNAL, signal_description(signum))
    if isinstance(error, WorkerDied):
        return "FAILED", Ending(Cause.WORKER_DIED, describe_error(error))
    return "FAILED", Ending(Cause.ERROR, describe_error(error))


@dataclass
class RunRecord:
    """One run as the store holds it, in fmtrain's terms."""

    run_id: str
    name: str  # the run's name (a child's ``adam/seed-43``, a trial's ``trial-03``)
    experiment_id: str
    status: str  # MLflow's: RUNNING, FINISHED, FAILED, KILLED
    started: float  # Unix seconds
    seconds: float  # from start to end (or to now, for a run not ended)
    last_sign_of_life: float  # its heartbeat, or its start when it has none
    labels: Labels
    parent_id: str | None
    ending: Ending | None
    settings: dict[str, str]  # the configuration's settings among its params, by their one name
    params: dict[str, str]
    metrics: dict[str, float]
    resumes: list[dict] = field(default_factory=list)  # {at, why, from_epoch}, oldest first
    stopped_by: str = ""  # a trial the search stopped early: "pruned" or "time budget"
    pruned_epoch: int | None = None
    curves: dict[str, list[float]] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict, repr=False)  # the tracking layer's own reading

    @property
    def config(self) -> str:
        """The configuration it trained (its name, for a run fmtrain did not label)."""
        return self.labels.config or self.name

    @property
    def seed(self) -> int | None:
        """The seed it trained with (its param), else the seed its sweep gave it (its label)."""
        value = self.settings.get("seed")
        return int(value) if value is not None and value.isdigit() else self.labels.seed

    @property
    def error(self) -> str:
        return self.ending.reason if self.ending else ""

    @property
    def scores(self) -> Scores:
        return Scores.from_metrics(self.metrics)

    @property
    def shared_settings(self) -> dict[str, str]:
        """A sweep parent's settings its children share."""
        return {key: value for key, value in self.params.items() if key not in names.SWEEP_PARAMS}


@dataclass(frozen=True)
class SearchPlan:
    """What a search was asked for, logged as its parent's params and read back to resume it."""

    config: str
    trials: int
    seed: int
    space: dict  # the search space as data (tuning.space.to_data)
    settings: dict[str, str]  # the settings every trial shares, given on the command line
    max_concurrent: int
    time_budget: float | None = None
    ray_address: str | None = None

    def params(self) -> dict[str, str]:
        values = {"config": self.config, "trials": str(self.trials), "seed": str(self.seed),
                  "space": json.dumps(self.space, separators=(",", ":")),
                  "max_concurrent": str(self.max_concurrent), **self.settings}
        if self.time_budget is not None:
            values["time_budget"] = configs.format_value(self.time_budget)
        if self.ray_address:
            values["ray_address"] = self.ray_address
        return values

    @classmethod
    def from_params(cls, params: dict[str, str]) -> SearchPlan:
        known = {knob.name for knob in configs.knobs()} - {"seed"}
        return cls(config=params["config"], trials=int(params["trials"]), seed=int(params["seed"]),
                   space=json.loads(params["space"]),
                   settings={key: value for key, value in params.items() if key in known},
                   max_concurrent=int(params.get("max_concurrent", "1")),
                   time_budget=float(params["time_budget"]) if "time_budget" in params else None,
                   ray_address=params.get("ray_address"))
