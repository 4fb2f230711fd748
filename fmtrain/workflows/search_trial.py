"""One trial of a search, in a Ray worker: ``train_run`` with the settings the sampler chose,
nested under the search's parent and tagged with its trial number.

When the trial's worker process (or node) dies, Ray Tune runs the trial again on a live worker
(``FailureConfig``, up to ``--max_retries`` times). The trial then finds its own run in the store
(the search's child with its trial number): a run the dead worker left RUNNING ends KILLED with
the reason and continues from the state its last completed epoch left in the store
(``workflows.resume``; its tag ``fmtrain.resumes`` records when, why and from which epoch); a run
that FINISHED before the worker died is kept; a trial with no run yet, or no state, trains anew.
The store is the only storage this needs: no Tune checkpoint, no shared disk.
"""

from __future__ import annotations

import dataclasses
import tempfile
from dataclasses import dataclass
from pathlib import Path

from fmtrain.learning import backend, configs, data
from fmtrain.learning.scores import Scores
from fmtrain.tuning.trials import trial_name
from fmtrain.workflows import resume_run
from fmtrain.workflows.retries import last_attempt
from fmtrain.workflows.train import train_run

# Why a trial's run that a dead worker left RUNNING ended (a start that ``resume`` takes as a
# process lost).
WORKER_DIED = "WorkerDied: its Ray worker process died; Ray Tune runs the trial again"


@dataclass(frozen=True)
class TrialJob:
    """What every trial of one search shares; small and picklable (a Ray worker receives it)."""

    base: configs.TrainConfig
    config_name: str
    parent_run_id: str
    verbose: int = 0


def run_trial(job: TrialJob, settings: dict, splits: data.Splits, gate) -> dict:
    """One trial, in a Ray worker: ``train_run`` with ``settings``, waiting at ``gate`` after each
    epoch; returns the kept model's final scores (the search's objective is final val_loss)."""
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import runs
    from fmtrain.tuning import engine
    from fmtrain.tuning.verdicts import gate_callback

    settings = dict(settings)
    number = int(settings.pop(engine.TRIAL_NUMBER_KEY))
    config = dataclasses.replace(job.base, **{key: plain(value) for key, value in settings.items()})

    def stopped(verdict) -> None:
        marks = {tags.STOPPED_BY_TAG: "time budget" if verdict.kind == "budget" else "pruned"}
        if verdict.kind == "pruned":
            marks.update({tags.PRUNED_TAG: "true", tags.PRUNED_EPOCH_TAG: str(verdict.epoch)})
        runs.tag_active(marks)

    backend.use(config.backend)  # Keras on the trial's backend, imported quietly, before the gate's callback
    with tempfile.TemporaryDirectory(prefix="fmtrain-resume-") as folder:
        earlier, point = _earlier_run(job, number, config, splits, Path(folder))
        if earlier is not None:  # it FINISHED before its worker died
            return earlier
        outcome = train_run(config, job.config_name, splits, parent_run_id=job.parent_run_id,
                            verbose=job.verbose, run_name=trial_name(number),
                            tags={tags.SEARCH_TAG: job.parent_run_id, tags.TRIAL_TAG: str(number)},
                            gates=[gate_callback(gate, stopped)], resume_from=point)
    return _objective(outcome.run_id, outcome.result.scores)


def _objective(run_id: str, scores: Scores) -> dict:
    """What a trial reports at its end: its kept model's final scores (the search's objective is
    final val_loss) and its run."""
    return {"val_loss": scores.final_val_loss, "val_accuracy": scores.final_val_accuracy, "run_id": run_id}


def _earlier_run(job: TrialJob, number: int, config: configs.TrainConfig, splits: data.Splits,
                 folder: Path) -> tuple[dict | None, object]:
    """What an earlier attempt of trial ``number`` left: the scores of its FINISHED run, or where
    its lost run stood (a ResumePoint, its state in ``folder``), or neither (train anew)."""
    from fmtrain.tracking import names as tags
    from fmtrain.tracking import queries

    mine = queries.child_states(job.parent_run_id, {tags.TRIAL_TAG: str(number)})
    kept, lost = last_attempt(mine, WORKER_DIED, trial_name(number))
    if kept is not None:
        (record,) = queries.fetch_records([kept])
        return _objective(kept, record.scores), None
    return None, (resume_run.child_point(lost, config, splits, folder) if lost is not None else None)


def plain(value):
    """Optuna's numpy scalars as Python's, so that settings print and compare as the CLI's."""
    return value.item() if hasattr(value, "item") else value
