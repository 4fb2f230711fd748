"""The Model Registry: register a run's model, move aliases, resolve model URIs, load back.

Aliases (``models:/NAME@ALIAS``) replace the deprecated registry stages.
"""

from __future__ import annotations

import contextlib
import functools
import io
import re
from dataclasses import dataclass

import mlflow
from mlflow.tracking import MlflowClient

from fmtrain.tracking.names import CONFIG_TAG, MODEL_NAME
from fmtrain.tracking.store import get_run, not_found


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
    run = get_run(run_id)
    models = client.search_logged_models(
        experiment_ids=[run.info.experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_NAME}'")
    if not models:
        raise RegistryError(f"run {run_id} has no logged model {MODEL_NAME!r} to register")
    # The logged model's own URI (models:/m-...): the version keeps its link to the run, and
    # MLflow need not look for (absent) run artifacts at runs:/RUN_ID/model.
    # MLflow prints its own "Successfully registered ..." lines; fmtrain's caller reports it.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(models[0].model_uri, name,
                                        tags={CONFIG_TAG: run.data.tags.get(CONFIG_TAG, "")})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def resolve(model_uri: str) -> ResolvedModel:
    """Check that ``model_uri`` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/PATH)
    points at something that exists, and say which registered version it is."""
    client = MlflowClient()
    if match := re.fullmatch(r"runs:/([^/]+)/(.+)", model_uri):
        return ResolvedModel(model_uri, run_id=get_run(match.group(1)).info.run_id)
    if match := re.fullmatch(r"models:/([^/@]+)@([^/]+)", model_uri):
        name, alias = match.groups()
        fetch = functools.partial(client.get_model_version_by_alias, name, alias)

        def missing():
            return f"registered model {name!r} has no alias {alias!r}; aliases: {_aliases(client, name)}"
    elif match := re.fullmatch(r"models:/([^/@]+)/(\d+)", model_uri):
        name, number = match.groups()
        fetch = functools.partial(client.get_model_version, name, number)

        def missing():
            return f"registered model {name!r} has no version {number}; latest is {_latest(client, name)}"
    else:
        raise RegistryError(f"model URI {model_uri!r} is not one of models:/NAME@ALIAS, "
                            "models:/NAME/VERSION or runs:/RUN_ID/model")
    with not_found(lambda: f"no registered model named {name!r}; registered models: "
                           f"{', '.join(m.name for m in client.search_registered_models()) or 'none'}"):
        client.get_registered_model(name)  # checked first: its message lists the known models
    with not_found(missing):
        version = fetch()
    return ResolvedModel(model_uri, name, str(version.version), version.run_id)


def _aliases(client: MlflowClient, name: str) -> str:
    aliases = client.get_registered_model(name).aliases
    return ", ".join(f"{a} (v{v})" for a, v in aliases.items()) or "none"


def _latest(client: MlflowClient, name: str) -> int:
    versions = client.search_model_versions(f"name = '{name}'")
    return max((int(v.version) for v in versions), default=0)


def load_keras_model(model_uri: str):
    """Load a logged model back as a Keras model through MLflow (on the current backend)."""
    return mlflow.keras.load_model(model_uri)
