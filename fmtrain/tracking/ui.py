"""Where the MLflow UI shows a store's runs: the address to open and the command that serves it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from fmtrain.tracking.store import get_run, sqlite_path, tracking_uri

# Where `mlflow ui` serves by default.
UI_ADDRESS = "http://127.0.0.1:5000"


@dataclass(frozen=True)
class UiLink:
    """Where a run shows in the MLflow UI and, for a store that no server serves yet (a local
    file, a database), the command that serves it there."""

    url: str
    serve_command: str | None = None


def ui_link(run_id: str, *, run_page: bool = False) -> UiLink | None:
    """The experiment's runs view holding ``run_id`` (with ``run_page``, the run's own page).

    None for a store whose UI address fmtrain cannot know (Databricks, say).
    """
    uri = tracking_uri()
    scheme = urlparse(uri).scheme
    if scheme in ("http", "https"):
        base, command = uri.rstrip("/"), None
    elif uri.startswith("databricks"):
        return None
    else:  # a file, a folder or a database that `mlflow ui` can serve
        base, command = UI_ADDRESS, f"mlflow ui --backend-store-uri {_servable(uri)}"
    page = f"#/experiments/{get_run(run_id).info.experiment_id}/runs" + (f"/{run_id}" if run_page else "")
    # The UI opens an experiment in its GenAI mode unless the address asks for the model
    # training one, whose side bar has the Runs, Models and Model registry pages.
    return UiLink(f"{base}/{page}?workflowType=machine_learning", command)


def _servable(uri: str) -> str:
    """The store's URI as `mlflow ui` can take it from any folder: an absolute file path, and a
    password hidden (the terminal is no place for it)."""
    parsed = urlparse(uri)
    if parsed.scheme == "sqlite" and (path := sqlite_path(uri)) is not None:
        return f"sqlite:///{path.resolve()}"
    if parsed.scheme in ("file", ""):
        return Path(parsed.path).resolve().as_uri()
    if parsed.password:
        return uri.replace(f":{parsed.password}@", ":***@", 1)
    return uri
