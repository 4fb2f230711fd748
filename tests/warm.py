"""A warm start for the ``fmtrain`` processes the tests signal, kill or watch.

Every ``fmtrain`` process spends about 9 CPU-seconds importing Keras, TensorFlow and MLflow
before it does anything, most of a short test command's cost. A warm server, one per pytest
process, imports them once; each command is then a ``fork()`` of it that runs the command
line's own ``main()``: a process of its own (its own pid, session, working directory,
environment, standard streams, signal handlers and exit status) that a test signals and kills
as it would a cold one. What the fork skips is only the import of modules that a cold start
imports the same way.

A command is started cold instead (its own interpreter) when the warm server's imports could
change what it does: Keras on JAX (``--backend jax`` or ``KERAS_BACKEND``), ``--seeds`` without
``--backend`` (several seeds pick JAX when it is installed), a resume (its backend is the resumed
run's) but ``train --resume`` of a run whose ``backend`` param is ``tensorflow`` in a
``sqlite:///`` store given by absolute path, a command that asks for TensorFlow's own logs
(``FMTRAIN_DEBUG``, ``TF_CPP_MIN_LOG_LEVEL=0``: TensorFlow reads them when imported), and every
command while ``FMTRAIN_TEST_COLD=1`` is set. The installed console script's own start is what
test_packaging and test_cli run.

A warm command's Ray workers on TensorFlow start warm too, as forks of the same server
(``tests/warm_worker.py``).

The server forks before TensorFlow ran any operation, so no thread pool of TensorFlow's is
half-copied; ``tests/test_warm.py`` checks that a warm run records the params, tags, metrics and
artifacts that a cold run of the same command does.

The protocol, on a Unix socket: the client sends one JSON line (argv, env, cwd, program; for a
Ray worker, script, argv, env, cwd and executable) with its file descriptors (stdin, stdout,
stderr; for a Ray worker, also its lifeline's read end); the server answers with the child's
pid, then, when the child exits, its exit status as ``subprocess`` reports it (``-N`` for
signal N).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import warm_worker

# What every fmtrain command imports before it works, imported once. Not Ray: it reads its
# variables when imported (engines.ray_environment sets them per command).
WARM_IMPORTS = ("fmtrain.cli.app", "fmtrain.tracking.store", "fmtrain.tracking.runs", "fmtrain.tracking.logged",
                "fmtrain.workflows.train", "fmtrain.workflows.sweep", "fmtrain.workflows.tune",
                "fmtrain.workflows.evaluate", "fmtrain.workflows.reap", "mlflow.keras")


def warm_eligible(argv: list[str], env: dict[str, str]) -> bool:
    """Whether ``fmtrain ARGV`` under ``env`` does the same forked from a process that runs
    Keras on TensorFlow as it does started cold."""
    args = [str(arg) for arg in argv]
    if env.get("FMTRAIN_TEST_COLD") == "1" or env.get("KERAS_BACKEND", "tensorflow") != "tensorflow":
        return False
    if env.get("FMTRAIN_DEBUG") or env.get("TF_CPP_MIN_LOG_LEVEL") == "0":  # TensorFlow's own logs
        return False
    if (run_id := _option(args, "--resume")) is not None:  # the backend is the resumed run's
        return args[:1] == ["train"] and _resumed_backend(run_id, env) == "tensorflow"
    if (backend := _option(args, "--backend")) is not None:
        return backend == "tensorflow"
    return _option(args, "--seeds") is None


def _option(args: list[str], name: str) -> str | None:
    """The value of ``NAME VALUE`` or ``NAME=VALUE`` in ``args`` ("" for a last bare NAME); None
    when ``args`` do not hold NAME."""
    for index, arg in enumerate(args):
        if arg == name:
            return args[index + 1] if index + 1 < len(args) else ""
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def _resumed_backend(run_id: str, env: dict[str, str]) -> str | None:
    """The ``backend`` param of the run ``run_id``, read from the file of a ``sqlite:///`` store
    given by absolute path in ``env``; None for any other store (a server may be one that a test
    has stopped), no such run, or a file that cannot be read at once (locked, a journal to roll
    back, no tables yet)."""
    uri = env.get("MLFLOW_TRACKING_URI", "")
    path = Path(uri.removeprefix("sqlite:///"))
    if not (uri.startswith("sqlite:///") and path.is_absolute() and path.is_file() and run_id):
        return None
    try:
        with contextlib.closing(sqlite3.connect(path.as_uri() + "?mode=ro", uri=True, timeout=5)) as store:
            row = store.execute("SELECT value FROM params WHERE run_uuid = ? AND key = 'backend'",
                                (run_id,)).fetchone()
    except sqlite3.Error:
        return None
    return row[0] if row else None


def _serve(path: str) -> None:
    import importlib

    from fmtrain.learning import backend

    python = warm_worker.python_folder(os.path.dirname(path))  # its forks' sys.executable

    backend.use("tensorflow")
    for name in WARM_IMPORTS:
        importlib.import_module(name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(64)
    wake_read, wake_write = os.pipe()
    os.set_blocking(wake_write, False)
    signal.set_wakeup_fd(wake_write)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    print("ready", flush=True)
    clients: set[socket.socket] = set()
    owners: dict[int, socket.socket] = {}
    while True:
        readable, _, _ = select.select([listener, wake_read, *clients], [], [])
        if listener in readable:
            clients.add(listener.accept()[0])
        if wake_read in readable:
            os.read(wake_read, 4096)
            _reap(owners)
        for client in [c for c in readable if c in clients]:
            try:
                data, fds, _, _ = socket.recv_fds(client, 1 << 20, 4)
                while data and not data.endswith(b"\n"):  # the rest of a long request
                    data += client.recv(1 << 20)
            except OSError:
                data, fds = b"", []
            if not data:
                clients.discard(client)
                client.close()
                continue
            request = json.loads(data)
            pid = os.fork()
            if pid == 0:
                listener.close()
                for other in clients:
                    other.close()
                signal.set_wakeup_fd(-1)
                os.close(wake_read)
                os.close(wake_write)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                if "script" in request:
                    warm_worker.child(request, fds, _become)  # never returns
                _child(request, fds, path, python)  # never returns
            for fd in fds:
                os.close(fd)
            if "script" in request:  # for script_pids()
                with open(_scripts_file(os.path.dirname(path)), "a") as scripts:
                    scripts.write(f"{pid}\n")
            owners[pid] = client
            client.sendall(json.dumps({"pid": pid}).encode() + b"\n")


def _reap(owners: dict[int, socket.socket]) -> None:
    while owners:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        client = owners.pop(pid, None)
        if client is not None:
            try:
                client.sendall(json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n")
            except OSError:
                pass


def _child(request: dict, fds: list[int], path: str, python: str) -> None:
    """Become ``fmtrain ARGV``: the request's session, streams, folder and environment, then the
    command line's ``main()``; leave with its status as the console script would. Its Ray, if it
    starts one, starts its processes with ``python``, warm_worker's, which hands each worker to the
    server at ``path``."""
    os.setsid()
    _become(request, fds)
    os.environ["FMTRAIN_TEST_WARM_SOCKET"] = path
    sys.executable = python
    sys.argv = [request["program"], *request["argv"]]  # MLflow's mlflow.source.name
    from fmtrain.cli.app import run

    run()  # leaves with os._exit
    os._exit(1)  # never back into the server's loop


def _become(request: dict, fds: list[int]) -> None:
    """The request's standard streams, folder and environment, as a new interpreter has them."""
    for target, fd in zip((0, 1, 2), fds, strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.environ.clear()
    os.environ.update(request["env"])
    tempfile.tempdir = None  # TMPDIR is read again
    unbuffered = bool(os.environ.get("PYTHONUNBUFFERED"))
    # The streams a new interpreter would open on these descriptors: stdout buffered on a pipe,
    # stderr by line, both written through under PYTHONUNBUFFERED.
    sys.stdin = sys.__stdin__ = io.TextIOWrapper(io.BufferedReader(io.FileIO(0, "r", closefd=False)))
    sys.stdout = sys.__stdout__ = io.TextIOWrapper(io.FileIO(1, "w", closefd=False) if unbuffered else
                                                   io.BufferedWriter(io.FileIO(1, "w", closefd=False)),
                                                   write_through=unbuffered)
    sys.stderr = sys.__stderr__ = io.TextIOWrapper(io.FileIO(2, "w", closefd=False) if unbuffered else
                                                   io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
                                                   line_buffering=True, write_through=unbuffered,
                                                   errors="backslashreplace")


class WarmProcess:
    """A command forked from the warm server, with ``subprocess.Popen``'s calls for a test."""

    def __init__(self, path: str, argv, env: dict[str, str], cwd, stdin: int, stdout: int, stderr: int):
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.connect(path)
        request = {"argv": [str(arg) for arg in argv], "env": env, "cwd": str(cwd or os.getcwd()),
                   "program": shutil.which("fmtrain", path=env.get("PATH")) or "fmtrain"}
        socket.send_fds(self._socket, [json.dumps(request).encode() + b"\n"], [stdin, stdout, stderr])
        self._buffer = b""
        self.pid = self._message(None)["pid"]
        self.returncode: int | None = None

    def _message(self, timeout: float | None) -> dict | None:
        """The server's next line; None when none came within ``timeout`` (0: do not wait)."""
        self._socket.settimeout(timeout)
        try:
            while b"\n" not in self._buffer:
                chunk = self._socket.recv(4096)
                if not chunk:
                    raise RuntimeError(f"the warm server closed before it answered (pid {getattr(self, 'pid', '?')})")
                self._buffer += chunk
        except (TimeoutError, BlockingIOError):
            return None
        finally:
            self._socket.settimeout(None)
        line, self._buffer = self._buffer.split(b"\n", 1)
        return json.loads(line)

    def poll(self) -> int | None:
        if self.returncode is None:
            message = self._message(0)
            if message is not None:
                self._ended(message)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        if self.returncode is None:
            message = self._message(timeout)
            if message is None:
                raise subprocess.TimeoutExpired(f"fmtrain (pid {self.pid})", timeout)
            self._ended(message)
        return self.returncode

    def _ended(self, message: dict) -> None:
        self.returncode = message["exit"]
        self._socket.close()

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # never a pid the system gave to another process since
            os.kill(self.pid, signum)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


_SERVER: dict = {}


def _warm_socket() -> str:
    """The socket of this pytest process's warm server (tests/warm.py), started on first use."""
    if "path" not in _SERVER:
        folder = tempfile.mkdtemp(prefix="warm", dir="/tmp")
        path = f"{folder}/server.sock"
        log = open(f"{folder}/server.log", "w")
        server = subprocess.Popen([sys.executable, __file__, path],
                                  stdout=subprocess.PIPE, stderr=log, text=True, start_new_session=True,
                                  env={k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))})
        ready = server.stdout.readline()
        assert ready == "ready\n", f"the warm server did not start: {open(log.name).read()[-2000:]}"
        _SERVER.update(path=path, server=server, folder=folder)
    return _SERVER["path"]


def start(argv, *, env=None, cwd=None, stdin=None):
    """``argv`` started as a user would, in a new session, its stdout and stderr on pipes (text):
    a ``subprocess.Popen``, or for ``fmtrain`` a warm.WarmProcess where warm.warm_eligible says
    the warm start does the same. Returns (process, stdout, stderr)."""
    env = dict(os.environ if env is None else env)
    if argv[0] != "fmtrain" or not warm_eligible(argv[1:], env):
        popen = subprocess.Popen(argv, env=env, cwd=cwd, stdin=stdin, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
        return popen, popen.stdout, popen.stderr
    out_read, out_write = os.pipe()
    err_read, err_write = os.pipe()
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        process = WarmProcess(_warm_socket(), argv[1:], env, cwd, null if stdin is None else stdin,
                              out_write, err_write)
    finally:
        for fd in (out_write, err_write, null):
            os.close(fd)
    return process, os.fdopen(out_read, "r"), os.fdopen(err_read, "r")


def run_fmtrain(argv, *, env=None, cwd=None, timeout=600):
    """``fmtrain ARGV`` in a process of its own (started as ``start`` does), waited for: a
    ``subprocess.CompletedProcess`` with its exit status, stdout and stderr."""
    process, out, err = start(["fmtrain", *[str(arg) for arg in argv]], env=env, cwd=cwd)
    texts = {}

    def drain(name, stream):  # both pipes read while it runs; daemons, as a grandchild may hold one
        with stream:
            texts[name] = stream.read()

    readers = [threading.Thread(target=drain, args=pipe, daemon=True) for pipe in (("out", out), ("err", err))]
    for reader in readers:
        reader.start()
    try:
        code = process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        raise
    for reader in readers:
        reader.join(timeout=30)
    return subprocess.CompletedProcess(["fmtrain", *argv], code, texts.get("out", ""), texts.get("err", ""))


def script_pids() -> set[int]:
    """The pids of the Ray workers this process's warm server has run as forks so far."""
    path = _scripts_file(_SERVER["folder"]) if "folder" in _SERVER else ""
    return {int(line) for line in open(path)} if os.path.exists(path) else set()


def _scripts_file(folder: str) -> str:
    """Where the warm server in ``folder`` lists the pids of the Ray workers it forked."""
    return os.path.join(folder, "scripts")


def stop_server() -> None:
    """End this process's warm server, if it started one (its commands have all been waited for)."""
    if "server" in _SERVER:
        os.killpg(_SERVER["server"].pid, signal.SIGKILL)
        _SERVER["server"].wait()
        shutil.rmtree(_SERVER["folder"], ignore_errors=True)
        _SERVER.clear()


if __name__ == "__main__":
    _serve(sys.argv[1])
