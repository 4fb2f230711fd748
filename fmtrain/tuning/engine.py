"""Where a search's trials run: Ray Tune, with Optuna's TPE choosing each trial's settings and
ASHA stopping poor trials on ``val_loss`` by epoch.

Like ``engines``, this knows nothing of MLflow: the workflow hands it the function that trains
one trial (a whole ``fmtrain train`` run) and gets back, per trial, how it ended.

Why ASHA and not Optuna's pruner: with Ray Tune running the trials, Optuna's study lives in the
driver (``OptunaSearch``), so a pruner called from a Keras callback in a worker would have no
study to ask; ASHA is Tune's own, decides in the driver from the per-epoch results every trial
reports, and stops trials asynchronously (no trial waits for a rung to fill).

Each trial is a Tune class trainable whose ``step()`` is one epoch: the training thread (the
whole run, as ``fmtrain train`` makes it) waits at the end of each epoch for Tune to go on.
A trial the search stops ends itself: ASHA's verdict (or the time budget's) is recorded, not
acted on by Tune, and the trial's next ``step()`` reads it, lets the thread stop training at that
epoch and finish its run (FINISHED, tagged), and reports the trial done. Tune itself stops a
running trial only on a signal or an error; ``cleanup()`` then tells the thread why and waits for
it, and the driver ends whatever run is left RUNNING. Function trainables could not do this: Tune
leaves their thread behind when it ends the worker, and it kills workers still stopping 5 s after
a search ends.

A worker that ends a trial takes the next one (``reuse_actors``; ``Trial.reset_config``), so
TensorFlow and MLflow are imported once per worker, not once per trial.

A trial whose worker process (or node) dies is run again by Tune on a live worker
(``FailureConfig``, up to ``max_retries`` times). The trial continues its own run from the state
in the store (``workflows.search_trial``), so Tune keeps no checkpoint. A trial whose training
failed reports its error as its last result instead of raising it: it is not run again.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, TrialScheduler
from ray.tune.search import ConcurrencyLimiter, Searcher
from ray.tune.search.optuna import OptunaSearch

from fmtrain.execution import engines, raystart, signals
from fmtrain.tuning.trainable import EPOCHS_DONE, FAILED, Trial
from fmtrain.tuning.verdicts import Verdict

# Import this module after raystart.ray_environment(): Ray reads its variables when imported.

# ASHA's rungs: a trial must show its val_loss for GRACE_EPOCHS epochs before it can be stopped,
# and at each rung (2, 6, 18 epochs) only the best third goes on.
GRACE_EPOCHS = 2
REDUCTION_FACTOR = 3
TRIAL_NUMBER_KEY = "fmtrain_trial_number"


@dataclass
class TrialEnd:
    """How a trial ended, as the driver saw it."""

    number: int
    config: dict
    result: dict = field(default_factory=dict)  # the last result reported
    verdict: Verdict | None = None
    error: str | None = None


@ray.remote(num_cpus=0)
class Verdicts:
    """The driver's record of which trials to stop and why, which each trial reads."""

    def __init__(self):
        self.pruned: dict[str, int] = {}
        self.all: Verdict | None = None

    def prune(self, trial_id: str, epoch: int) -> None:
        self.pruned[trial_id] = epoch

    def stop_all(self, verdict: Verdict) -> None:
        if self.all is None or (verdict.kind == "signal" and self.all.kind != "signal"):
            self.all = verdict  # a signal overrides the time budget's verdict

    def pending(self, trial_id: str) -> Verdict | None:
        """The verdict on ``trial_id``, if any: pruned, or the search's end (budget, signal)."""
        if trial_id in self.pruned:
            return Verdict("pruned", self.pruned[trial_id])
        return self.all

    def why(self, trial_id: str) -> Verdict:
        """Why Tune itself stopped a running trial: a signal, or else an error in the search."""
        return self.pending(trial_id) or Verdict("aborted")

    def stopping_all(self) -> bool:
        return self.all is not None

    def pruned_trials(self) -> dict[str, int]:
        return dict(self.pruned)


class _Search(OptunaSearch):
    """Optuna's sampler as Tune's searcher, with each trial's Optuna number in its config."""

    def __init__(self, verdicts, **options):
        super().__init__(**options)
        self.verdicts, self.suggested = verdicts, 0

    def suggest(self, trial_id):
        if ray.get(self.verdicts.stopping_all.remote()):  # the budget is spent: no new trial
            return Searcher.FINISHED
        config = super().suggest(trial_id)
        if isinstance(config, dict):
            # Optuna numbers its trials in the order they are asked for, which is the order of
            # suggestion here: the same number as Optuna's own, without its private trial map.
            config[TRIAL_NUMBER_KEY] = self.suggested
            self.suggested += 1
        return config

    def on_trial_complete(self, trial_id, result=None, error=False):
        if result and FAILED in result:  # its training failed: Optuna records the trial failed
            result, error = None, True
        super().on_trial_complete(trial_id, result, error)


class _Asha(ASHAScheduler):
    """ASHA whose verdicts are recorded for the trials to act on, not carried out by Tune."""

    def __init__(self, verdicts, max_epochs: int, **options):
        # Time is epochs trained: the run's end (no epoch) is no rung's, and a trial run again
        # after its worker died is judged at the same epochs as one never interrupted.
        super().__init__(time_attr=EPOCHS_DONE, max_t=max_epochs + 1, **options)
        self.verdicts = verdicts

    def on_trial_result(self, tune_controller, trial, result):
        decision = super().on_trial_result(tune_controller, trial, result)
        if result.get("done"):
            return decision
        if decision == TrialScheduler.STOP and not result.get("last_epoch"):
            ray.get(self.verdicts.prune.remote(trial.trial_id, int(result["epoch"])))
        # The trial reads the verdict at its next step and ends itself (its run ends FINISHED,
        # tagged); a trial whose epoch was its last anyway ends by itself, not pruned.
        return TrialScheduler.CONTINUE


class _StopAll(tune.Stopper):
    """Ends the whole search on a signal (recorded by the driver) or when the budget is spent."""

    def __init__(self, received: list[int], verdicts, budget: float | None):
        self.received, self.verdicts, self.budget = received, verdicts, budget
        self.start = time.monotonic()
        self.reason: Verdict | None = None

    def __call__(self, trial_id, result):
        return False

    def stop_all(self):
        """True on a signal, also once the budget is spent: Tune stops the running trials at once.
        The time budget only posts its verdict: no new trial starts, and the running ones end
        themselves at their next epoch."""
        if self.received and (self.reason is None or self.reason.kind != "signal"):
            self.reason = Verdict("signal", signum=self.received[0])
        elif self.reason is None and self.budget and time.monotonic() - self.start > self.budget:
            self.reason = Verdict("budget")
        else:
            return self.reason is not None and self.reason.kind == "signal"
        ray.get(self.verdicts.stop_all.remote(self.reason), timeout=30)
        return self.reason.kind == "signal"


class _Progress(tune.Callback):
    """A line as each trial ends, and how each ended, for the driver."""

    def __init__(self, verdicts, echo: Callable[[int, TrialEnd], None], retried: Callable[[int, int], None]):
        self.verdicts, self.echo, self.retried = verdicts, echo, retried
        self.ends: dict[str, TrialEnd] = {}

    def _end(self, trial, error: str | None = None) -> None:
        config = dict(trial.config)
        number = config.pop(TRIAL_NUMBER_KEY, -1)
        result = dict(trial.last_result or {})
        verdict = None
        if result.get("stopped_by") == "pruned":
            verdict = Verdict("pruned", ray.get(self.verdicts.pruned_trials.remote()).get(trial.trial_id))
        elif result.get("stopped_by") == "budget":
            verdict = Verdict("budget")
        elif not result.get("done") and error is None:  # Tune stopped it: a signal, an error
            verdict = ray.get(self.verdicts.why.remote(trial.trial_id))
        end = TrialEnd(number, config, result, verdict, error)
        self.ends[trial.trial_id] = end
        self.echo(len(self.ends), end)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self._end(trial, (trial.last_result or {}).get(FAILED))

    def on_trial_recover(self, iteration, trials, trial, **info):
        """Its worker died and Tune runs it again (FailureConfig): the trial goes on in its run."""
        self.retried(int(trial.config.get(TRIAL_NUMBER_KEY, -1)), trial.num_failures)

    def on_trial_error(self, iteration, trials, trial, **info):
        try:
            error = trial.get_pickled_error() or trial.get_error()
        except Exception:  # noqa: BLE001 - the line is a courtesy; the run holds the error
            error = None
        self._end(trial, _last_line(str(error) if error else "the trial failed"))


def _last_line(text: str) -> str:
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return lines[-1] if lines else str(text)


@contextlib.contextmanager
def started(placement: engines.Placement, env: dict[str, str]):
    """Ray for the block (a local instance, or the cluster), with ``env`` and the thread limits in
    every worker; yields a temporary folder for Tune's own files, removed after."""
    with raystart.ray_session(placement, {**env, **engines.thread_environment(placement.threads)}), \
            tempfile.TemporaryDirectory(prefix="fmtrain-tune-") as storage:
        yield storage


def search(function: Callable, job, shared, *, storage: str, distributions: dict, trials: int,
           placement: engines.Placement, seed: int, max_epochs: int, time_budget: float | None,
           max_retries: int, echo: Callable[[int, TrialEnd], None],
           retried: Callable[[int, int], None]) -> tuple[list[TrialEnd], int | None]:
    """Run ``trials`` trials of ``function`` (at most ``placement.workers`` at once) and return
    how each ended, in the order they ended, and the signal that stopped the search, if any.

    Call it inside ``started()``, whose folder is ``storage``. Each trial calls
    ``function(job, settings, shared, gate)``, in a Ray worker process of its
    own, with the settings Optuna's TPE sampler (seeded with ``seed``) suggested and the trial's
    Optuna number under TRIAL_NUMBER_KEY. A trial whose worker process dies is run again on a
    live worker, up to ``max_retries`` times (Tune's FailureConfig; ``retried(number, attempt)``
    is told), with the same settings: ``function`` continues its run.
    """
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune's own SIGINT handling, progress tables and result files are not wanted: the command
    # handles signals itself and prints a line per trial, and MLflow is the record.
    # A failed trial's last result holds its error, not val_loss: not an error of the search's.
    for name, value in (("TUNE_DISABLE_SIGINT_HANDLER", "1"), ("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1"),
                        ("TUNE_DISABLE_STRICT_METRIC_CHECKING", "1"),
                        ("RAY_AIR_NEW_OUTPUT", "0"), ("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "1000")):
        os.environ.setdefault(name, value)
    for name in ("ray.tune", "ray.train", "ray.air"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    received: list[int] = []
    with signals.recorded(received, escalate=True):
        verdicts = Verdicts.remote()
        searcher = ConcurrencyLimiter(
            _Search(verdicts, space=distributions, metric="val_loss", mode="min",
                    sampler=optuna.samplers.TPESampler(seed=seed)),
            max_concurrent=placement.workers)
        scheduler = _Asha(verdicts, max_epochs, metric="val_loss", mode="min", grace_period=GRACE_EPOCHS,
                          reduction_factor=REDUCTION_FACTOR)
        progress = _Progress(verdicts, echo, retried)
        trainable = tune.with_resources(
            tune.with_parameters(Trial, function=function, job=job, shared=shared, verdicts=verdicts),
            {"cpu": placement.threads})
        tuner = tune.Tuner(
            trainable,
            tune_config=tune.TuneConfig(search_alg=searcher, scheduler=scheduler, num_samples=trials,
                                        reuse_actors=True),
            run_config=tune.RunConfig(storage_path=storage, name="search", verbose=0,
                                      stop=_StopAll(received, verdicts, time_budget),
                                      callbacks=[progress],
                                      checkpoint_config=tune.CheckpointConfig(checkpoint_at_end=False),
                                      failure_config=tune.FailureConfig(max_failures=max_retries)))
        tuner.fit()
    return list(progress.ends.values()), (received[0] if received else None)
