"""The Ray workers of a warm command (tests/warm.py), started warm too.

A warm command's Ray starts its processes with ``sys.executable``, which in the command's fork is
PYTHON: the virtual environment's Python, seen through a folder of the warm server's. PYTHON
hands a Ray worker on TensorFlow (Ray's own ``default_worker.py``) to the warm server, which runs
it as a fork of its own (``child``), and starts every other process (Ray's agents,
``setup_worker.py``, a worker on JAX) as Python itself would. The process that Ray started stays
as the worker's stand-in (``client``): Ray starts, signals, kills and watches the worker through
it, as it always does; the fork has its arguments, streams and environment, leads a process
group of its own as a worker Ray starts does, and dies with it.

The stand-in imports only the standard library: it runs as ``python -I -S``.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import signal
import socket
import sys
import threading

# bin/python of the warm server's folder: the stand-in for a Ray worker on TensorFlow of a warm
# command, Python itself for anything else.
PYTHON = """#!/bin/bash
if [[ "$1" == */ray/_private/workers/default_worker.py && "${{KERAS_BACKEND:-tensorflow}}" == tensorflow
      && -n "$FMTRAIN_TEST_WARM_SOCKET" ]]; then
    exec {real} -I -S {client} "$0" "$@"
fi
exec -a "$0" {real} "$@"
"""


def python_folder(folder: str) -> str:
    """PYTHON's folder under ``folder``, as ``python -m venv`` lays one out; returns its bin/python."""
    root = os.path.join(folder, "python")
    os.makedirs(os.path.join(root, "bin"))
    shutil.copy(os.path.join(sys.prefix, "pyvenv.cfg"), root)
    os.symlink(os.path.join(sys.prefix, "lib"), os.path.join(root, "lib"))
    python = os.path.join(root, "bin", "python")
    with open(python, "w") as script:
        script.write(PYTHON.format(real=shlex.quote(os.path.realpath(sys.executable)),
                                   client=shlex.quote(os.path.abspath(__file__))))
    os.chmod(python, 0o755)
    return python


def child(request: dict, fds: list[int], become) -> None:
    """Become ``python SCRIPT ARGS`` (a Ray worker) for the client that PYTHON started in its
    place: its streams, folder, environment and arguments. It runs the script as Python runs
    a file, and ends as Python ends one: with the script's status, after its exit functions. It
    leads a process group of its own, as the worker that Ray starts does (Ray kills a worker's
    group), and dies with its client (SIGKILL when the client's end of ``lifeline`` closes), so
    that whatever kills the client kills it too. ``become`` takes on the request's streams,
    folder and environment (warm._become)."""
    *streams, lifeline = fds
    os.setpgid(0, 0)
    become(request, streams)
    threading.Thread(target=_die_when_closed, args=(lifeline,), daemon=True).start()
    sys.executable = request["executable"]
    sys.argv = list(request["argv"])
    import runpy

    runpy.run_path(request["script"], run_name="__main__")
    sys.exit(0)  # out of the server's loop, into the interpreter's own ending


def _die_when_closed(fd: int) -> None:
    while os.read(fd, 1):
        pass
    os.kill(os.getpid(), signal.SIGKILL)


def client(python: str, argv: list[str]) -> None:
    """PYTHON's stand-in for ``python ARGV``: the warm server runs it as a fork, with this process's
    streams, folder and environment; this process passes on the signals it gets, and ends as the
    fork ended (by the same signal, or with the same status). Without the server, Python itself."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(os.environ["FMTRAIN_TEST_WARM_SOCKET"])
    except OSError:
        os.execv(sys.executable, [python, *argv])
    lifeline, held = os.pipe()  # the fork reads its end until ours, held, closes as this process ends
    request = {"script": argv[0], "argv": argv, "env": dict(os.environ), "cwd": os.getcwd(), "executable": python}
    socket.send_fds(connection, [json.dumps(request).encode() + b"\n"], [0, 1, 2, lifeline])
    os.close(lifeline)
    answers = connection.makefile("rb")
    pid = json.loads(answers.readline())["pid"]

    def pass_on(signum, _frame):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(signum, pass_on)
    line = answers.readline()
    code = json.loads(line)["exit"] if line else -signal.SIGKILL  # the server itself was killed
    if code < 0:
        if -code not in (signal.SIGKILL, signal.SIGSTOP):  # the only two without a handler to reset
            signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
    os._exit(code)


if __name__ == "__main__":
    client(sys.argv[1], sys.argv[2:])
