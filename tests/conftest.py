"""Shared fixtures: a temporary tracking store, tiny IDX files, and the real data's location."""

from __future__ import annotations

import contextlib
import gzip
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = Path(os.environ.get("FMTRAIN_TEST_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
PROJECT = Path(__file__).resolve().parent.parent
# The tests start `fmtrain` and `mlflow` as a user would: from the environment running pytest,
# activated or not.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
# No MLflow telemetry in the tests' processes: with no network but the loopback its background
# thread fails to fetch its configuration and then removes a variable from os.environ, which
# another thread (a client's proxy look-up) may be reading at that moment.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, the format of the four Fashion-MNIST files."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_dataset(directory: Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """Four IDX files of a small learnable synthetic set: each class lights its own band."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(count, 28, 28))
        for index, label in enumerate(labels):
            images[index, 2 * label: 2 * label + 3, :] += 180
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images.clip(0, 255).astype(np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return directory


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny-fashion"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST files; CI installs them with the Debian package."""
    missing = [p for p in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
               if not (REAL_DATA / p).exists()]
    assert not missing, (f"{REAL_DATA} lacks {missing}: install the Debian package "
                         "dataset-fashion-mnist or set FMTRAIN_TEST_DATA_DIR")
    return REAL_DATA


@pytest.fixture(scope="session")
def _empty_store(tmp_path_factory) -> Path:
    """An empty sqlite store whose tables MLflow made (its schema migrations cost about 1.5
    CPU-seconds), copied for each test's ``store``."""
    from mlflow.tracking import MlflowClient

    path = tmp_path_factory.mktemp("empty-store") / "mlflow.db"
    MlflowClient(tracking_uri=f"sqlite:///{path}").search_experiments(max_results=1)
    return path


@pytest.fixture
def store(tmp_path, monkeypatch, _empty_store) -> str:
    """A sqlite tracking store in a temporary folder, also the working directory: empty, its
    tables made as by a first command run there, so that the test and its commands can open it
    at once (MLflow does not lock its schema's creation against another process)."""
    import shutil
    import sqlite3

    path = tmp_path / "mlflow.db"
    shutil.copyfile(_empty_store, path)
    # The Default experiment's files go where MLflow would have put them, had it made the store
    # here: ./mlruns/0 of the folder it was made from.
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE experiments SET artifact_location = ? WHERE experiment_id = 0",
                   (str(tmp_path / "mlruns" / "0"),))
    uri = f"sqlite:///{path}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "FMTRAIN_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def all_runs(experiment: str = "fashion-mnist"):
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="list")


def curve(run, key: str = "val_loss", client=None) -> list[tuple[int, float]]:
    """A run's metric ``key`` as (step, value) pairs, in step order (then the order logged)."""
    from mlflow.tracking import MlflowClient

    history = (client or MlflowClient()).get_metric_history(run.info.run_id, key)
    return [(m.step, m.value) for m in sorted(history, key=lambda m: (m.step, m.timestamp))]


def fmtrain_here(argv, *, env: dict | None = None, cwd=None):
    """``fmtrain ARGV`` run in this process, through the command line's own ``main()``: for a
    command whose own process is not what a test checks (a reference run, a resume, a sync), so
    that it costs no second start of TensorFlow and MLflow. ``env``'s MLFLOW_* and FMTRAIN_*
    variables replace this process's for the call; ``cwd`` is its working directory. Returns a
    subprocess.CompletedProcess with the exit status and what the command printed."""
    import io
    import subprocess

    import mlflow

    from fmtrain.cli.app import main

    out, err, before = io.StringIO(), io.StringIO(), mlflow.get_tracking_uri()
    with pytest.MonkeyPatch.context() as patch, contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        if env is not None:
            for name in [k for k in os.environ if k.startswith(("MLFLOW_", "FMTRAIN_"))]:
                patch.delenv(name)
            for name, value in env.items():
                if name.startswith(("MLFLOW_", "FMTRAIN_")):
                    patch.setenv(name, value)
        if cwd is not None:
            patch.chdir(cwd)
        mlflow.set_tracking_uri(os.environ.get("MLFLOW_TRACKING_URI"))
        environment = dict(os.environ)
        try:
            code = main([str(arg) for arg in argv])
        finally:
            mlflow.set_tracking_uri(before)
            # What the command set in its environment (MLflow's experiment id, say) goes with it.
            os.environ.clear()
            os.environ.update(environment)
    return subprocess.CompletedProcess(["fmtrain", *argv], code, out.getvalue(), err.getvalue())


# The files that take longest, longest first (their times in a run of the whole suite: 395 s
# down to 83 s). pytest-xdist hands whole files to its workers in collection order, so with these
# first the workers end together, not one of them running a long file alone at the end.
LONGEST_FIRST = ("test_team.py", "test_hosts.py", "test_outages.py", "test_resume_search.py", "test_ui.py",
                 "test_resume_sweeps.py", "test_faults.py", "test_record.py", "test_tune.py", "test_resume.py",
                 "test_backends.py", "test_parallel.py", "test_trajectory.py", "test_registry.py",
                 "test_serving.py", "test_logged_models.py", "test_packaging.py")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: the rest keep their order


# Every process a test starts, so that its teardown ends those still alive (a failed or timed-out
# test included): each leads a process group of its own, which holds what it started.
_STARTED: list = []


@pytest.fixture(autouse=True)
def _started_processes_ended():
    """Before each test, no experiment chosen by the environment: MLflow's set_experiment, called
    in this process by an earlier test's fixture, writes MLFLOW_EXPERIMENT_ID for the processes
    it starts, and a later test's processes would inherit an id of another store. After each
    test, SIGKILL the process group of every process it started that still runs."""
    import signal

    for name in ("MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "MLFLOW_RUN_ID"):
        os.environ.pop(name, None)
    yield
    while _STARTED:
        popen = _STARTED.pop()
        if popen.poll() is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(popen.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                popen.wait(timeout=30)


def start_process(argv, *, env=None, cwd=None, **options):
    """``argv`` as a user starts it, cold: a new process in a session (and process group) of its
    own, so that a signal to the group reaches it and what it started; ended after the test."""
    import subprocess

    popen = subprocess.Popen([str(arg) for arg in argv], env=env, cwd=cwd, start_new_session=True, **options)
    _STARTED.append(popen)
    return popen


def run_fmtrain(argv, *, env=None, cwd=None, timeout: float = 300):
    """``fmtrain ARGV`` as a user runs it: the installed console script, a cold process of its own;
    returns a subprocess.CompletedProcess (its exit status as a shell reports it: ``-N`` here is
    signal N, ``$?`` 128 + N)."""
    import subprocess

    popen = start_process(["fmtrain", *argv], env=env, cwd=cwd, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    out, err = popen.communicate(timeout=timeout)
    return subprocess.CompletedProcess(["fmtrain", *argv], popen.returncode, out, err)


class Process:
    """A command started as a user would (``start_process``: a cold process in its own session),
    whose output lines a test can wait on."""

    def __init__(self, argv, *, env=None, cwd=None):
        import queue
        import subprocess
        import threading

        env = dict(os.environ if env is None else env, PYTHONUNBUFFERED="1")
        self.popen = start_process(argv, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True, bufsize=1)
        self.lines: list[str] = []
        self._queue = queue.Queue()
        self.err: list[str] = []
        self._readers = [threading.Thread(target=self._pump, args=(self.popen.stdout, self._queue), daemon=True),
                         threading.Thread(target=self._pump, args=(self.popen.stderr, self.err), daemon=True)]
        for reader in self._readers:
            reader.start()

    @staticmethod
    def _pump(stream, sink):
        with stream:
            for line in stream:
                (sink.put if hasattr(sink, "put") else sink.append)(line.rstrip("\n"))
        if hasattr(sink, "put"):
            sink.put(None)

    def expect(self, text: str, timeout: float = 300) -> str:
        """Wait for an output line containing ``text``; fail with the output if it never comes."""
        import queue
        import time

        deadline = time.monotonic() + timeout
        while True:
            try:
                line = self._queue.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                raise AssertionError(f"no line with {text!r} in {timeout} s:\n" + "\n".join(self.lines[-20:])) from None
            if line is None:
                raise AssertionError(f"exited without {text!r}:\n" + "\n".join(self.lines[-20:] + self.err[-20:]))
            self.lines.append(line)
            if text in line:
                return line

    def signal(self, signum) -> None:
        """``signum`` to the process alone (``kill PID``)."""
        self.popen.send_signal(signum)

    def signal_group(self, signum) -> None:
        """``signum`` to its whole process group, as a terminal's Ctrl-C sends SIGINT."""
        os.killpg(self.popen.pid, signum)

    def wait(self, timeout: float = 300) -> int:
        code = self.popen.wait(timeout=timeout)
        for reader in self._readers:  # both pipes read to their end
            reader.join(timeout=30)
        while not self._queue.empty():
            line = self._queue.get()
            if line is not None:
                self.lines.append(line)
        return code

    @property
    def last_error_line(self) -> str:
        return self.err[-1] if self.err else ""


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_http(url: str, process=None, timeout: float = 120) -> None:
    """Poll ``url`` until it answers 200 (a server starting); fail if its process exits."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        if process is not None and process.poll() is not None:
            raise AssertionError(f"{url}: the server exited with {process.returncode}")
        assert time.monotonic() < deadline, f"{url} did not answer in {timeout} s"
        time.sleep(0.5)


def descendants(pid: int) -> list[int]:
    """The ids of every process below ``pid`` (children, their children, ...), from /proc."""
    children = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                children.append(int(entry))
    return children + [d for c in children for d in descendants(c)]


def processes_mentioning(text: str) -> list[int]:
    """Processes whose command line mentions ``text`` (a temporary folder of one test's own)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and int(entry) != os.getpid():
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as handle:
                    if text.encode() in handle.read():
                        found.append(int(entry))
            except OSError:
                continue
    return found


def ray_env(store: str, ray_tmp: str, **extra) -> dict:
    """The environment of a command that starts its own local Ray instance in ``ray_tmp`` and
    logs to ``store``: no ``mlflow run`` run and no cluster inherited from this process."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=store, PYTHONUNBUFFERED="1", RAY_TMPDIR=ray_tmp, **extra)
    env.pop("MLFLOW_RUN_ID", None)
    env.pop("RAY_ADDRESS", None)
    return env


@pytest.fixture
def ray_tmp():
    """A short temporary folder for the Ray instances a test starts (Ray's socket paths must stay
    under about 100 characters): RAY_TMPDIR for them. Whatever Ray process of this folder is
    still alive at the end is killed; the folder is removed."""
    import shutil
    import tempfile

    folder = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    yield folder
    kill_processes_mentioning(folder)
    shutil.rmtree(folder, ignore_errors=True)


def kill_processes_mentioning(text: str) -> None:
    """SIGKILL every process whose command line mentions ``text`` (a test's own folder)."""
    import signal

    for pid in processes_mentioning(text):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@dataclass
class ServedModel:
    """A model trained on a real subset and registered, in a session's own sqlite store."""

    tracking_uri: str
    model_uri: str  # version 1, as `--register_as` registered it
    champion_uri: str  # version 2, the same model, as `fmtrain register --alias champion` registered it
    run_id: str
    experiment: str  # the experiment the training chose: MLFLOW_EXPERIMENT_NAME's
    folder: Path


@pytest.fixture(scope="session")
def registered_model(tmp_path_factory, real_data_dir) -> ServedModel:
    """``fmtrain train --config adam --limit 3000 --epochs 2 --backend jax --register_as
    fashion-mnist`` as a user runs it, a cold process with MLFLOW_EXPERIMENT_NAME=chapter set,
    then ``fmtrain register RUN_ID --name fashion-mnist --alias champion``: shared by the
    serving and lineage tests. On JAX, its requirements (keras, jax, jaxlib, no TensorFlow) make
    a small environment of its own."""
    folder = tmp_path_factory.mktemp("registered")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_EXPERIMENT_NAME="chapter")
    done = run_fmtrain(["train", "--config", "adam", "--limit", "3000", "--epochs", "2", "--backend", "jax",
                        "--quiet", "--data_dir", real_data_dir, "--register_as", "fashion-mnist"], env=env, cwd=folder)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    run_id = re.search(r"experiments/\d+/runs/(\w+)", done.stdout).group(1)
    registered = fmtrain_here(["register", run_id, "--name", "fashion-mnist", "--alias", "champion"], env=env,
                              cwd=folder)
    assert "as fashion-mnist version 2 with alias champion" in registered.stdout, registered.stderr[-2000:]
    return ServedModel(uri, "models:/fashion-mnist/1", "models:/fashion-mnist@champion", run_id, "chapter", folder)


def without_fmtrain(env: dict) -> dict:
    """``env`` for a process that must not find fmtrain nor this process's choices: no
    PYTHONPATH (which may name fmtrain's checkout), no Keras backend, no virtual environment."""
    return {k: v for k, v in env.items() if k not in ("PYTHONPATH", "KERAS_BACKEND", "VIRTUAL_ENV")}


@dataclass
class ModelServer:
    """A running `mlflow models serve` and the environment MLflow made for it."""

    url: str
    python: Path  # the Python of that environment


@pytest.fixture(scope="session")
def model_server(registered_model, tmp_path_factory):
    """``mlflow models serve -m models:/fashion-mnist@champion`` with MLflow's uv environment
    manager, as a user starts it: MLflow builds an environment of the model's own requirements
    (fmtrain is not among them; the user's uv cache is shared, so that a second session installs
    from it) and serves from there, on loopback and a free port; stopped after the session, its
    environment removed. Yields a ModelServer."""
    import shutil
    import signal
    import subprocess

    port, envs = free_port(), tmp_path_factory.mktemp("model-envs")
    env = dict(without_fmtrain(os.environ), MLFLOW_TRACKING_URI=registered_model.tracking_uri,
               MLFLOW_DISABLE_TELEMETRY="true", MLFLOW_ENV_ROOT=str(envs))
    log = open(registered_model.folder / "serve.log", "w")
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", registered_model.champion_uri,
                               "--env-manager", "uv", "--host", "127.0.0.1", "--port", str(port)],
                              env=env, cwd=registered_model.folder, stdout=log, stderr=subprocess.STDOUT,
                              start_new_session=True)
    try:
        # An empty uv cache downloads about 1 GB of packages first.
        wait_for_http(f"http://127.0.0.1:{port}/ping", server, timeout=600)
        (python,) = envs.glob("*/bin/python")
        yield ModelServer(f"http://127.0.0.1:{port}", python)
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
        log.close()
        shutil.rmtree(envs, ignore_errors=True)


# The `mlflow server`s the tests start run no MLflow job runner (its huey consumers serve GenAI
# scorers and trace roll-ups, which fmtrain never asks for), as scripts/team.sh's server runs
# none: four fewer processes, each importing MLflow, per server start.
NO_JOB_RUNNER = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


class ServerHandle(tuple):
    """(URI, start, stop) of a test's server, which also pauses (SIGSTOP: it accepts connections
    and never answers) and goes on (SIGCONT)."""

    def __new__(cls, uri, start, stop, group):
        handle = super().__new__(cls, (uri, start, stop))
        handle.group = group
        return handle

    def pause(self) -> None:
        os.killpg(self.group(), __import__("signal").SIGSTOP)

    def go_on(self) -> None:
        os.killpg(self.group(), __import__("signal").SIGCONT)


def restartable_server(tmp_path: Path, stop_signal: int):
    """A real `mlflow server` on loopback with proxied artifacts, for a fixture to yield from:
    yields (its URI, start, stop) (a ServerHandle); ``stop`` sends ``stop_signal`` to its process
    group and ``start`` starts it again on the same database and port. Its teardown lets a
    paused server go on, then kills it."""
    import signal
    import subprocess

    port, folder = free_port(), tmp_path / "server"
    folder.mkdir()
    argv = ["mlflow", "server", "--backend-store-uri", f"sqlite:///{folder}/server.db",
            "--artifacts-destination", str(folder / "artifacts"), "--host", "127.0.0.1",
            "--port", str(port), "--workers", "1"]
    servers = []

    def start():
        server = subprocess.Popen(argv, cwd=folder, env=dict(os.environ, **NO_JOB_RUNNER),
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                  start_new_session=True)
        servers.append(server)
        wait_for_http(f"http://127.0.0.1:{port}/health", server)

    def stop():
        os.killpg(servers[-1].pid, stop_signal)
        servers[-1].wait(timeout=60)

    start()
    yield ServerHandle(f"http://127.0.0.1:{port}", start, stop, lambda: servers[-1].pid)
    for server in servers:
        if server.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(server.pid, signal.SIGCONT)
                os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=60)


def post_json(url: str, payload, timeout: float = 300) -> tuple[int, dict]:
    """POST ``payload`` (JSON text, or a value to dump) to ``url``; the HTTP status and the
    answer's JSON, for an error status too."""
    import json
    import urllib.error
    import urllib.request

    body = payload if isinstance(payload, str) else json.dumps(payload)
    request = urllib.request.Request(url, data=body.encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())
