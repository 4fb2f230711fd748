"""The MLflow boundary for the Model Registry: register a run's model, move aliases, load back.

Aliases (``models:/NAME@ALIAS``) replace the deprecated registry stages.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

MODEL_NAME = "model"  # the name each training run logs its model under


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
    try:
        run = client.get_run(run_id)
    except MlflowException:
        raise RegistryError(f"run {run_id!r} not found in {mlflow.get_tracking_uri()}") from None
    models = [m for m in _logged_models(client, run) if m.name == MODEL_NAME]
    if not models:
        raise RegistryError(f"run {run_id} has no logged model {MODEL_NAME!r} to register")
    version = mlflow.register_model(models[-1].model_uri, name,
                                     tags={"fmtrain.config": run.data.tags.get("fmtrain.config", "")})
    # register_model with a models:/m-... URI leaves run_id empty on some stores; name it too.
    client.set_model_version_tag(name, version.version, "run_id", run_id)
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def _logged_models(client: MlflowClient, run):
    return client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run.info.run_id}'",
    )


def resolve(model_uri: str) -> ResolvedModel:
    """Check that ``model_uri`` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH)
    points at something that exists, and say which registered version it is."""
    client = MlflowClient()
    alias = re.fullmatch(r"models:/([^/@]+)@([^/]+)", model_uri)
    numbered = re.fullmatch(r"models:/([^/@]+)/(\d+)", model_uri)
    run = re.fullmatch(r"runs:/([^/]+)/(.+)", model_uri)
    try:
        if alias:
            name = _known_model(client, alias.group(1))
            try:
                version = client.get_model_version_by_alias(name, alias.group(2))
            except MlflowException:
                raise RegistryError(f"registered model {name!r} has no alias {alias.group(2)!r}; "
                                    f"aliases: {_aliases(client, name)}") from None
            return ResolvedModel(model_uri, name, version.version, version.run_id)
        if numbered:
            name = _known_model(client, numbered.group(1))
            try:
                version = client.get_model_version(name, numbered.group(2))
            except MlflowException:
                raise RegistryError(f"registered model {name!r} has no version {numbered.group(2)}; "
                                    f"latest is {_latest(client, name)}") from None
            return ResolvedModel(model_uri, name, version.version, version.run_id)
        if run:
            try:
                client.get_run(run.group(1))
            except MlflowException:
                raise RegistryError(f"run {run.group(1)!r} not found in {mlflow.get_tracking_uri()}") from None
            return ResolvedModel(model_uri, run_id=run.group(1))
    except MlflowException as error:  # the store itself did not answer
        raise RegistryError(f"tracking store {mlflow.get_tracking_uri()} cannot be read: "
                            f"{str(error).splitlines()[0]}") from None
    raise RegistryError(f"model URI {model_uri!r} is not one of models:/NAME@ALIAS, "
                        "models:/NAME/VERSION or runs:/RUN_ID/model")


def _known_model(client: MlflowClient, name: str) -> str:
    try:
        client.get_registered_model(name)
    except MlflowException as error:
        if "RESOURCE_DOES_NOT_EXIST" in str(error.error_code):
            known = [m.name for m in client.search_registered_models()]
            raise RegistryError(f"no registered model named {name!r}; registered models: "
                                f"{', '.join(known) or 'none'}") from None
        raise
    return name


def _aliases(client: MlflowClient, name: str) -> str:
    aliases = client.get_registered_model(name).aliases
    return ", ".join(f"{a} (v{v})" for a, v in aliases.items()) or "none"


def _latest(client: MlflowClient, name: str) -> str:
    versions = client.search_model_versions(f"name = '{name}'")
    return max((int(v.version) for v in versions), default=0)


def load_keras_model(model_uri: str):
    """Load a logged model back as a Keras model through MLflow."""
    return mlflow.tensorflow.load_model(model_uri)
