"""Test hosts that share no disk, on one machine: Linux network namespaces joined by a switch,
each host with mount, UTS, IPC and PID namespaces of its own.

A host is a network namespace with one interface (``eth0``, an address of a private subnet)
cabled by a veth pair to a bridge in a switch namespace, and a small init process, pid 1 of the
host's PID namespace, that holds the host's mount namespace: a tmpfs of its own on ``/tmp`` and
``/dev/shm``, its own hostname and ``/etc/hosts``, and ``HOME=/tmp/home``. So no host sees
another's ``/tmp``, home or files written there (the checkout and its virtual environment stay
visible, where they are, also when they live under ``/tmp``). Every command runs in a host through
``nsenter`` into its init's namespaces.

The switch is a namespace of its own: no address outside the hosts is reachable from them, and
the machine's own namespace never sees their traffic. Cutting a host's cable takes its port on
the switch down. Halting a host SIGKILLs its init, and the kernel ends every process of its PID
namespace; whatever entered only its network namespace is killed by pid (``ip netns pids``).
Nothing here touches a process or namespace it did not make.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path

# pid 1 of a host: reaps the orphans re-parented to it, leaves at SIGTERM.
INIT = ("import os, signal, time\n"
        "signal.signal(signal.SIGTERM, lambda *a: os._exit(0))\n"
        "while True:\n"
        "    try:\n        os.wait()\n"
        "    except ChildProcessError:\n        time.sleep(1)\n")

BOOT = r"""
set -e
keep=""
for path in "$3" "$4"; do  # the checkout and the interpreter stay, even under /tmp
  case "$path" in /tmp/*) mkdir -p "/run/fmtrain-hosts/$1$path"; mount --bind "$path" "/run/fmtrain-hosts/$1$path"
                          keep="$keep $path";; esac
done
mount -t tmpfs -o size=2g,mode=1777 tmpfs /tmp
mount -t tmpfs -o size=256m,mode=1777 tmpfs /dev/shm
for path in $keep; do mkdir -p "$path"; mount --move "/run/fmtrain-hosts/$1$path" "$path"; done
hostname "$1"
printf "127.0.0.1 localhost\n%s\n" "$5" > /tmp/.hosts
mount --bind /tmp/.hosts /etc/hosts
mkdir -p /tmp/home
cd /tmp/home
exec "$6" -S -c "$2"
"""


def _run(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, text=True)


class Hosts:
    """``count`` hosts named ``{prefix}1``.. on the subnet ``10.{a}.{b}.0/24`` (addresses .1, .2, ..)."""

    def __init__(self, count: int = 2, project: Path | None = None):
        self.prefix = f"fmh{secrets.token_hex(2)}"
        self.count = count
        self.subnet = f"10.{200 + secrets.randbelow(50)}.{secrets.randbelow(250)}"
        self.switch = f"{self.prefix}sw"
        self.names = [f"{self.prefix}{i}" for i in range(1, count + 1)]
        self.project = Path(project or Path(__file__).resolve().parent.parent)
        self.inits: dict[str, subprocess.Popen] = {}
        self.init_pids: dict[str, int] = {}

    def address(self, host: str) -> str:
        return f"{self.subnet}.{self.names.index(host) + 1}"

    def up(self) -> Hosts:
        _run("ip", "netns", "add", self.switch)
        _run("ip", "-n", self.switch, "link", "set", "lo", "up")
        _run("ip", "-n", self.switch, "link", "add", "br0", "type", "bridge")
        _run("ip", "-n", self.switch, "link", "set", "br0", "up")
        table = "\n".join(f"{self.address(host)} {host}" for host in self.names)
        for host in self.names:
            _run("ip", "netns", "add", host)
            _run("ip", "-n", host, "link", "set", "lo", "up")
            _run("ip", "-n", self.switch, "link", "add", f"p-{host}", "type", "veth", "peer", "name", "eth0",
                 "netns", host)
            _run("ip", "-n", self.switch, "link", "set", f"p-{host}", "master", "br0", "up")
            _run("ip", "-n", host, "addr", "add", f"{self.address(host)}/24", "dev", "eth0")
            _run("ip", "-n", host, "link", "set", "eth0", "up")
            self._boot(host, table)
        return self

    def _boot(self, host: str, table: str) -> None:
        argv = ["ip", "netns", "exec", host, "unshare", "--mount", "--uts", "--ipc", "--pid", "--fork",
                "--kill-child", "--mount-proc", "--propagation", "private", "/bin/sh", "-c", BOOT, "sh",
                host, INIT, str(self.project), sys.prefix, table, sys.executable]
        unshare = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.PIPE, start_new_session=True)
        self.inits[host] = unshare
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            assert unshare.poll() is None, f"{host} did not boot: {unshare.stderr.read().decode()[-2000:]}"
            children = Path(f"/proc/{unshare.pid}/task/{unshare.pid}/children").read_text().split()
            for child in children:  # unshare's child is the host's pid 1 once it runs the init
                with contextlib.suppress(OSError):
                    if b"os.wait()" in Path(f"/proc/{child}/cmdline").read_bytes():
                        self.init_pids[host] = int(child)
                        return
            time.sleep(0.05)  # polling the process table for the host's init
        raise AssertionError(f"{host} did not boot in 30 s")

    def command(self, host: str, argv: list[str]) -> list[str]:
        """``argv`` as run on ``host``: in its init's namespaces (a process of its PID namespace)."""
        return ["nsenter", "-t", str(self.init_pids[host]), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                *map(str, argv)]

    def environment(self, **extra) -> dict[str, str]:
        """A clean environment for a host's commands: the test's PATH and locale, the host's home."""
        env = {name: os.environ[name] for name in ("PATH", "LANG") if name in os.environ}
        env.update(HOME="/tmp/home", MLFLOW_DISABLE_TELEMETRY="true", PYTHONUNBUFFERED="1", **extra)
        return env

    def run(self, host: str, argv: list[str], env: dict | None = None, timeout: float = 600,
            cwd: str = "/tmp/home") -> subprocess.CompletedProcess:
        return subprocess.run(self.command(host, ["sh", "-c", 'cd "$0" && exec "$@"', cwd, *argv]),
                              env=env or self.environment(), capture_output=True, text=True, timeout=timeout)

    def cut(self, host: str) -> None:
        """Unplug ``host``'s cable: its port on the switch goes down (nothing reaches it)."""
        _run("ip", "-n", self.switch, "link", "set", f"p-{host}", "down")

    def plug(self, host: str) -> None:
        _run("ip", "-n", self.switch, "link", "set", f"p-{host}", "up")

    def pids(self, host: str) -> list[int]:
        """The machine's pids of every process in ``host``'s network namespace."""
        done = subprocess.run(["ip", "netns", "pids", host], capture_output=True, text=True)
        return [int(pid) for pid in done.stdout.split()]

    def halt(self, host: str) -> None:
        """Power ``host`` off: its init SIGKILLed ends every process of its PID namespace, and its
        tmpfs go with its mount namespace; stragglers of its network namespace are killed by pid."""
        unshare, init = self.inits.pop(host, None), self.init_pids.pop(host, None)
        for pid in (init, unshare.pid if unshare else None):
            if pid:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
        if unshare:
            with contextlib.suppress(subprocess.TimeoutExpired):
                unshare.wait(timeout=30)
        deadline = time.monotonic() + 30
        while (left := self.pids(host)) and time.monotonic() < deadline:
            for pid in left:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.2)  # polling the namespace's process list until it is empty

    def down(self) -> None:
        for host in list(self.names):
            self.halt(host)
            subprocess.run(["ip", "netns", "del", host], capture_output=True)
        subprocess.run(["ip", "netns", "del", self.switch], capture_output=True)
