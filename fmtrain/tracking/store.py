"""Opening the tracking store: the schema once under a lock, a fast start-up check, "not found".

The store is ``MLFLOW_TRACKING_URI`` when set, otherwise MLflow's default (``sqlite:///mlflow.db``
in the working directory).
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from pathlib import Path
from urllib.parse import urlparse

import mlflow
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from fmtrain.errors import StoreError
from fmtrain.tracking.names import DEFAULT_EXPERIMENT
from fmtrain.tracking.store_errors import Fault, classify

# The start-up check of an HTTP store fails within seconds; later requests keep MLflow's own
# retries with back-off (several minutes), so an outage during training is ridden out.
_FAST = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "10"}


def tracking_uri() -> str:
    return mlflow.get_tracking_uri()


def open_store(experiment: str | None = None, *, select: bool = True,
               experiment_id: str | None = None) -> None:
    """Check that the store can be used and (with ``select``) select the experiment for new runs:
    ``experiment`` (``--experiment``) when given, else as MLflow chooses it (``_chosen``).

    Under ``mlflow run`` the run and its experiment exist already and are kept. Raises
    StoreError, in one line naming the store, when it cannot be created, written or reached,
    and for a deleted experiment. ``experiment_id`` selects an existing experiment by id (a
    resumed sweep's).
    """
    # MLflow logs every database error with its traceback (70 lines) before raising it; the
    # error itself reaches the person as one line.
    logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
    uri = tracking_uri()
    if uri.startswith("sqlite:"):
        _prepare_sqlite(uri)
    with fail_fast(), _unreachable_is_store_error():
        if os.environ.get("MLFLOW_RUN_ID"):
            run = MlflowClient().get_run(os.environ["MLFLOW_RUN_ID"])
            location = MlflowClient().get_experiment(run.info.experiment_id).artifact_location
        elif experiment_id is not None:
            location = mlflow.set_experiment(experiment_id=experiment_id).artifact_location
        elif select:
            found = _chosen(experiment)
            # Losing a race to create the experiment (several processes starting at once in a
            # new one), set_experiment returns it without making it the active experiment, and
            # the runs would go to the Default one (where a server's users may not write).
            location = mlflow.set_experiment(experiment_id=found.experiment_id).artifact_location
        else:
            MlflowClient().search_experiments(max_results=1)
            return
    _probe_artifact_location(location)


def _chosen(experiment: str | None):
    """The experiment new runs go to, created when a name is new: ``experiment`` when given,
    else MLflow's variables with MLflow's own rules (``MLFLOW_EXPERIMENT_NAME``, which
    ``MLFLOW_EXPERIMENT_ID`` must match when both are set; else ``MLFLOW_EXPERIMENT_ID``, which
    must exist), else fashion-mnist. A deleted one is a StoreError naming it."""
    from mlflow.environment_variables import MLFLOW_EXPERIMENT_ID, MLFLOW_EXPERIMENT_NAME

    client = MlflowClient()
    name = experiment or MLFLOW_EXPERIMENT_NAME.get()
    given_id = None if experiment else MLFLOW_EXPERIMENT_ID.get()
    if name:
        found = client.get_experiment_by_name(name)
        if found is not None and given_id and given_id != found.experiment_id:
            raise StoreError(f"MLFLOW_EXPERIMENT_ID is {given_id}, but experiment {name!r} "
                             f"(MLFLOW_EXPERIMENT_NAME) has id {found.experiment_id}; unset one of them")
    elif given_id:
        try:
            found = client.get_experiment(given_id)
        except MlflowException as error:
            if classify(error) is not Fault.MISSING and error.error_code != "INVALID_PARAMETER_VALUE":
                raise
            raise StoreError(f"MLFLOW_EXPERIMENT_ID is {given_id}, but {tracking_uri()} has no experiment "
                             "with that id; unset it or set it to an existing experiment's") from None
    else:
        name, found = DEFAULT_EXPERIMENT, client.get_experiment_by_name(DEFAULT_EXPERIMENT)
    if found is not None and found.lifecycle_stage == "deleted":
        raise StoreError(f"experiment {found.name!r} (id {found.experiment_id}) is deleted; restore it "
                         f"(`mlflow experiments restore --experiment-id {found.experiment_id}`) or "
                         "choose another with --experiment")
    return found or mlflow.set_experiment(name)


def _probe_artifact_location(location: str) -> None:
    """Write and remove a small file where a local store keeps artifacts, so that an unwritable
    place is found before training rather than after it. A server's artifacts are its own."""
    parsed = urlparse(location)
    if parsed.scheme not in ("", "file"):
        return
    folder = Path(parsed.path if parsed.scheme == "file" else location)
    probe = folder / f".fmtrain-probe-{os.getpid()}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe.write_bytes(b"fmtrain")
        probe.unlink()
    except OSError as error:
        raise StoreError(f"artifact location {folder} cannot be written ({error.strerror}); make it "
                         "writable, free space, or use another experiment or store") from None


def sqlite_path(uri: str) -> Path | None:
    path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else None
    return None if not path or path == ":memory:" else Path(path)


def _prepare_sqlite(uri: str) -> None:
    """Create or upgrade the sqlite schema once, under a file lock, before MLflow opens it.

    Several processes opening a new store at once (a parallel sweep, a CI matrix) would otherwise
    each run MLflow's schema migrations and collide.
    """
    path = sqlite_path(uri)
    if path is None:
        return
    path = path.resolve()
    if not path.parent.is_dir():
        raise StoreError(f"tracking store {path}: folder {path.parent} does not exist; "
                         "create it or set MLFLOW_TRACKING_URI")
    # Real writes, not os.access: root passes every permission check, but not an immutable
    # file or a read-only mount.
    if path.exists():
        try:
            open(path, "r+b").close()
        except OSError as error:
            raise StoreError(f"tracking store {path} cannot be written ({error.strerror}); make "
                             "it writable or set MLFLOW_TRACKING_URI to a store you can write") from None
    lock = path.with_name(path.name + ".lock")
    try:
        handle = open(lock, "a")
    except OSError as error:
        raise StoreError(f"tracking store {path} cannot be written: folder {path.parent}: "
                         f"{error.strerror}; run from a writable folder or set "
                         "MLFLOW_TRACKING_URI") from None
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            with _unreachable_is_store_error():
                MlflowClient(tracking_uri=uri).search_experiments(max_results=1)
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def fail_fast():
    """Short HTTP retries and time-outs for the block; the user's own settings win."""
    added = [name for name in _FAST if name not in os.environ]
    os.environ.update({name: _FAST[name] for name in added})
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


@contextlib.contextmanager
def _unreachable_is_store_error():
    try:
        yield
    except StoreError:
        raise
    except Exception as error:  # noqa: BLE001 - any failure to open the store is the store's
        raise StoreError(describe_store_error(error)) from None


def describe_store_error(error: BaseException) -> str:
    """One line on why the store cannot be used, naming it."""
    uri = tracking_uri()
    fault = classify(error)
    if fault is Fault.UNREACHABLE:
        return (f"tracking store {uri} cannot be reached; start it or point MLFLOW_TRACKING_URI "
                "at one that runs")
    if fault is Fault.READ_ONLY:
        return f"tracking store {uri} cannot be written; check the file's and folder's permissions"
    if fault is Fault.UNAUTHENTICATED:
        return (f"tracking store {uri} refused the credentials; check MLFLOW_TRACKING_USERNAME "
                "and MLFLOW_TRACKING_PASSWORD")
    if fault is Fault.FORBIDDEN:
        user = os.environ.get("MLFLOW_TRACKING_USERNAME", "this user")
        return (f"tracking store {uri} denied {user} permission to write there; ask the "
                "experiment's owner or an admin for EDIT permission, or use another experiment")
    text = str(getattr(error, "message", "") or error)
    first = text.strip().splitlines()[0] if text.strip() else type(error).__name__
    return f"tracking store {uri}: {first}"


@contextlib.contextmanager
def not_found(message):
    """Turn the store's 'does not exist' into ValueError(message); other errors pass.

    ``message`` is text, or a function giving it, called only on failure (it may ask the store
    what does exist)."""
    try:
        yield
    except MlflowException as error:
        # A run id that names nothing is INVALID_PARAMETER_VALUE to some stores.
        if classify(error) is Fault.MISSING or error.error_code == "INVALID_PARAMETER_VALUE":
            raise ValueError(message() if callable(message) else message) from None
        raise


def get_run(run_id: str):
    """The run ``run_id``; a ValueError naming the store when there is none."""
    with not_found(lambda: f"run {run_id!r} not found in {tracking_uri()}"):
        return MlflowClient().get_run(run_id)


def reopen(run_id: str, **arguments):
    """``mlflow.start_run`` of the existing run ``run_id`` (with ``arguments``), in its own
    experiment. MLflow refuses to reopen a run outside the experiment this process selected last,
    as a command that follows another in one process would (`fmtrain sync` after a training, a
    resume after another experiment's run), so the run's experiment is selected first."""
    mlflow.set_experiment(experiment_id=get_run(run_id).info.experiment_id)
    return mlflow.start_run(run_id=run_id, **arguments)


def is_server() -> bool:
    """Whether the store is a tracking server (``http(s)://``), which every machine can reach."""
    return urlparse(tracking_uri()).scheme in ("http", "https")


def check_cluster_store(ray_address: str | None) -> None:
    """A Ray cluster's nodes log to the store too: refuse, in one line, a store only this machine
    can reach (a sqlite file, a folder)."""
    if ray_address and not is_server():
        raise ValueError(f"a Ray cluster needs an http(s):// tracking URI that its nodes can reach, not "
                         f"{tracking_uri()}; set MLFLOW_TRACKING_URI to a tracking server "
                         "(docs/team.md)")


def worker_environment() -> dict[str, str]:
    """The environment a run in another process (a Ray worker) needs to use this store as this
    process does: the tracking URI (a local file's path made absolute, since a worker's working
    directory is not ours), the credentials and HTTP settings; and no ``mlflow run`` run to
    resume (an empty ``MLFLOW_RUN_ID``: the workers of a local Ray instance inherit this
    process's environment)."""
    env = {name: value for name, value in os.environ.items()
           if name.startswith(("MLFLOW_TRACKING_", "MLFLOW_HTTP_REQUEST_", "MLFLOW_SUPPRESS_"))}
    uri = tracking_uri()
    path = sqlite_path(uri)
    if path is not None:
        uri = f"sqlite:///{path.resolve()}"
    elif urlparse(uri).scheme in ("", "file"):
        uri = Path(urlparse(uri).path).resolve().as_uri()
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_RUN_ID="")
    # A worker's lines reach the terminal prefixed with its task; MLflow's links to each child's
    # page would be most of them. The sweep's own lines name every run.
    env.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return env
