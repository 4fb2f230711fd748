"""Where a search's Optuna study lives: the tracking store itself, through MLflow's own Optuna
storage (``mlflow.optuna.storage.MlflowStorage``).

Every process that takes part in a search reaches the tracking store already: the driver, each
Ray worker (on any node of a cluster), a later ``fmtrain tune --resume``. So the study lives
there too, and a team needs nothing beyond its tracking server. MLflow keeps a study as a run
and each of its trials as a nested run; they go to an experiment of their own beside the
search's (``<experiment> (Optuna studies)``), so that the experiment a person compares keeps
fmtrain's runs alone: one parent per search and one run per trial.
"""

from __future__ import annotations

from mlflow.tracking import MlflowClient

from fmtrain.tracking.store_errors import Fault, classify

SUFFIX = " (Optuna studies)"


def storage(experiment_id: str):
    """The Optuna storage for the studies of searches whose runs go to ``experiment_id``."""
    from mlflow.optuna.storage import MlflowStorage

    return MlflowStorage(experiment_id=studies_experiment(experiment_id))


def studies_experiment(experiment_id: str) -> str:
    """The id of the experiment that holds the studies of searches in ``experiment_id``, made the
    first time (another process making it at the same moment is fine)."""
    client = MlflowClient()
    name = client.get_experiment(experiment_id).name + SUFFIX
    found = client.get_experiment_by_name(name)
    if found is not None:
        return found.experiment_id
    try:
        return client.create_experiment(name)
    except Exception as error:
        if classify(error) not in (Fault.ALREADY_EXISTS, Fault.REFUSED):
            raise
        return client.get_experiment_by_name(name).experiment_id
