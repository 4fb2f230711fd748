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

from fmtrain.tracking import logged_models
from fmtrain.tracking.names import CHAMPION_ALIAS, CONFIG_TAG

__all__ = ["CHAMPION_ALIAS", "RegistryError", "ResolvedModel", "register", "resolve"]
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
    model_id: str | None = None  # the logged model (m-...), to link test metrics to it

    @property
    def pinned_uri(self) -> str:
        """The URI of exactly this version (``models:/NAME/N``), not of an alias that may move."""
        return f"models:/{self.name}/{self.version}" if self.name and self.version else self.uri


def register(run_id: str, name: str, alias: str | None = None):
    """Register the final model logged by ``run_id`` (not its best checkpoint) as a new version
    of ``name``; point ``alias`` at it.

    Returns the new ModelVersion. Raises RegistryError for an unknown run or a run without model.
    """
    client = MlflowClient()
    run = get_run(run_id)
    models = logged_models.final_models(run_id)
    if not models:
        raise RegistryError(f"run {run_id} has no logged model to register")
    # The logged model's own URI (models:/m-...): the version keeps its link to the run, and
    # MLflow need not look for (absent) run artifacts at runs:/RUN_ID/NAME.
    # MLflow prints its own "Successfully registered ..." lines; fmtrain's caller reports it.
    with contextlib.redirect_stderr(io.StringIO()):
        version = mlflow.register_model(models[-1].model_uri, name,
                                        tags={CONFIG_TAG: run.data.tags.get(CONFIG_TAG, "")})
    if alias:
        client.set_registered_model_alias(name, alias, version.version)
    return version


def describe_version(name: str, version: str, text: str) -> None:
    """Set the Markdown the registry shows as the version's description."""
    MlflowClient().update_model_version(name, version, description=text)


def resolve(model_uri: str) -> ResolvedModel:
    """Check that ``model_uri`` (models:/NAME@ALIAS, models:/NAME/VERSION, runs:/RUN_ID/NAME)
    points at something that exists, and say which registered version and logged model it is."""
    client = MlflowClient()
    if match := re.fullmatch(r"runs:/([^/]+)/(.+)", model_uri):
        run = get_run(match.group(1))
        models = {model.name: model.model_id for model in logged_models.run_models(run.info.run_id)}
        name = match.group(2).split("/")[0]
        if models and name not in models:  # a run without logged models may hold MLflow 2's
            raise RegistryError(f"run {run.info.run_id} has no model {name!r}; its models: "
                                + ", ".join(f"runs:/{run.info.run_id}/{n}" for n in models))
        return ResolvedModel(model_uri, run_id=run.info.run_id, model_id=models.get(name))
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
                            "models:/NAME/VERSION or runs:/RUN_ID/CONFIG")
    with not_found(lambda: f"no registered model named {name!r}; registered models: "
                           f"{', '.join(m.name for m in client.search_registered_models()) or 'none'}"):
        client.get_registered_model(name)  # checked first: its message lists the known models
    with not_found(missing):
        version = fetch()
    model_id = version.model_id or _logged_model_id(version.source)
    return ResolvedModel(model_uri, name, str(version.version), version.run_id, model_id)


def _logged_model_id(source: str | None) -> str | None:
    # The sqlite store leaves a version's model_id empty; fmtrain registers the logged model's
    # own URI (models:/m-...), so the source names it.
    match = re.fullmatch(r"models:/(m-[0-9a-f]+)", source or "")
    return match.group(1) if match else None


def _aliases(client: MlflowClient, name: str) -> str:
    aliases = client.get_registered_model(name).aliases
    return ", ".join(f"{a} (v{v})" for a, v in aliases.items()) or "none"


def _latest(client: MlflowClient, name: str) -> int:
    versions = client.search_model_versions(f"name = '{name}'")
    return max((int(v.version) for v in versions), default=0)

