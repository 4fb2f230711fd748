"""The MLflow boundary for the Model Registry: register a run's model, move aliases, load back.

Aliases (``models:/NAME@ALIAS``) replace the deprecated registry stages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fmtrain.tracking.runs import CONFIG_TAG, MISSING_CODES, MODEL_NAME, not_found


class RegistryError(ValueError):
    """A model, version, alias or run that cannot be found or used; the message says which."""


@dataclass(frozen=True)
class ResolvedModel:
    """A model URI and, when it names a registered model, its name and version."""

    uri: str
    name: str | None = None
    version: str | None = None
    run_id: str | None = None


def register(run_id: str, name: str, alias: str | None = None):
    """Register the model logged by ``run_id`` as a new version of ``name``; point ``alias`` at it.

    Returns the new ModelVersion. Raises RegistryError for an unknown run or a run without model.
    """
    client = MlflowClient()
    with not_found(f"run {run_id!r} not found in {mlflow.get_tracking_uri()}"):
        run = client.get_run(run_id)
    if not client.search_logged_models(experiment_ids=[run.info.experiment_id],
                                       filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'"):
        raise RegistryError(f"run {run_id} has no logged model {MODEL_NAME!r} to register")
    version = mlflow.register_model(f"runs:/{run_id}/{MODEL_NAME}", name,
                                    tags={CONFIG_TAG: run.data.tags.get(CONFIG_TAG, "")})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def resolve(model_uri: str) -> ResolvedModel:
    """Check that ``model_uri`` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH)
    points at something that exists, and say which registered version it is."""
    client = MlflowClient()
    if match := re.fullmatch(r"models:/([^/@]+)@([^/]+)", model_uri):
        name, alias = _known_model(client, match.group(1)), match.group(2)
        with not_found(f"registered model {name!r} has no alias {alias!r}; "
                        f"aliases: {_aliases(client, name)}"):
            version = client.get_model_version_by_alias(name, alias)
        return ResolvedModel(model_uri, name, version.version, version.run_id)
    if match := re.fullmatch(r"models:/([^/@]+)/(\d+)", model_uri):
        name, number = _known_model(client, match.group(1)), match.group(2)
        with not_found(f"registered model {name!r} has no version {number}; "
                        f"latest is {_latest(client, name)}"):
            version = client.get_model_version(name, number)
        return ResolvedModel(model_uri, name, version.version, version.run_id)
    if match := re.fullmatch(r"runs:/([^/]+)/(.+)", model_uri):
        with not_found(f"run {match.group(1)!r} not found in {mlflow.get_tracking_uri()}"):
            client.get_run(match.group(1))
        return ResolvedModel(model_uri, run_id=match.group(1))
    raise RegistryError(f"model URI {model_uri!r} is not one of models:/NAME@ALIAS, "
                        "models:/NAME/VERSION or runs:/RUN_ID/model")


def _known_model(client: MlflowClient, name: str) -> str:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if error.error_code not in MISSING_CODES:
            raise
        known = [m.name for m in client.search_registered_models()]
        raise RegistryError(f"no registered model named {name!r}; registered models: "
                            f"{', '.join(known) or 'none'}") from None
    return name


def _aliases(client: MlflowClient, name: str) -> str:
    aliases = client.get_registered_model(name).aliases
    return ", ".join(f"{a} (v{v})" for a, v in aliases.items()) or "none"


def _latest(client: MlflowClient, name: str) -> int:
    versions = client.search_model_versions(f"name = '{name}'")
    return max((int(v.version) for v in versions), default=0)


def load_keras_model(model_uri: str):
    """Load a logged model back as a Keras model through MLflow."""
    return mlflow.tensorflow.load_model(model_uri)
