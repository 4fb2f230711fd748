"""MLflow's names that fmtrain relies on beyond MLflow's public API, in one adapter.

``tests/test_internals.py`` runs each check of ``GUARDED`` against the installed MLflow.
"""

from __future__ import annotations


def _artifact_repository() -> bool:
    from mlflow.store.artifact import artifact_repository_registry

    return callable(getattr(artifact_repository_registry, "get_artifact_repository", None))


# The function mlflow.pyfunc.load_model calls in a model's ``loader_module`` (MLflow's
# custom-flavor contract): the loader of models logged by fmtrain 0.2 (tracking.serving).
PYFUNC_LOADER = "_load_pyfunc"


def _pyfunc_loader() -> bool:
    import inspect

    import mlflow.pyfunc

    return f".{PYFUNC_LOADER}(data_path" in inspect.getsource(mlflow.pyfunc.load_model)


# (library, what is used, a check that it is still there)
GUARDED = [
    ("mlflow", "mlflow.store.artifact.artifact_repository_registry.get_artifact_repository", _artifact_repository),
    ("mlflow", f"mlflow.pyfunc.load_model calls loader_module.{PYFUNC_LOADER}", _pyfunc_loader),
]


def delete_artifacts(artifact_uri: str, path: str) -> None:
    """Delete the artifacts under ``path`` of a run whose artifacts live at ``artifact_uri``: the
    client has no call for it (a run's resumable state, once the run FINISHED, is removed)."""
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    get_artifact_repository(artifact_uri).delete_artifacts(path)
