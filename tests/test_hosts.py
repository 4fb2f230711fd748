"""Hosts that share no disk (tests/hosts.py): a head host runs docs/team.md's store (PostgreSQL,
SeaweedFS, the MLflow server with basic auth and artifacts in the bucket) and the Ray head, a
worker host a Ray node, each on its own namespace address, with its own /tmp and home. A sweep
and a search started on the head train on both hosts, their files read back through the server
and from the bucket. SeaweedFS killed under a run on the worker: its files wait in the worker's
journal, `fmtrain reap` on the head says where, `fmtrain sync` on the worker completes it. Last,
the worker's cable is cut under a child it trains: the child's run waits in the worker's own
journal while the head notices the node lost and continues the run on a live worker from its
last epoch in the store; plugged back, `fmtrain sync` on the worker skips every epoch the
continued run holds.

Every command, the test's own reads included, runs inside a host: no traffic leaves the hosts'
switch. Everything ends with the hosts (their processes killed by pid, their /tmp gone).
"""

import json
import os
import re
import secrets
import shlex
import signal
import textwrap
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
from hosts import Hosts

from conftest import PROJECT, REAL_DATA, Process

PORTS = dict(PGPORT="5432", S3_PORT="8333", MLFLOW_PORT="5000", RAY_PORT="6379")
BUCKET = "bucket"
TEAM_SH = str(PROJECT / "scripts" / "team.sh")  # run from each host's home, where its Ray workers start
# The head notices a node that stopped answering in about 5 x (1 s + 2 s): Ray's GCS health check
# settings, read from the head's environment (RAY_health_check_*).
HEALTH_CHECKS = dict(RAY_health_check_period_ms="1000", RAY_health_check_timeout_ms="2000",
                     RAY_health_check_failure_threshold="5")
SMALL = ["--limit", "3000", "--backend", "jax", "--quiet", "--data_dir", str(REAL_DATA)]
# Ray prefixes each worker's lines with its task, process and (on another node) address.
WORKER_LINE = re.compile(r"\((\S+) pid=(\d+)(?:, ip=([^)]*))?\) ")


@dataclass
class Cluster:
    hosts: Hosts
    head: str
    worker: str
    admin: dict  # the administrator's environment on the head (team.sh's settings)
    member: dict  # alice's environment, on either host
    bucket: dict  # the bucket's endpoint and keys, as `up` printed them (for the administrator)

    def run(self, host: str, argv: list[str], env: dict | None = None, timeout: float = 600, **kwargs):
        return self.hosts.run(host, argv, env=env or self.member, timeout=timeout, **kwargs)

    def fmtrain(self, host: str, *argv: str, env: dict | None = None, timeout: float = 600):
        return self.run(host, ["fmtrain", *argv], env=env, timeout=timeout)

    def query(self, code: str, *args: str, host: str | None = None):
        """``code`` run as alice on ``host`` (the head), with ``client`` an MlflowClient and
        ``args`` as ``sys.argv[1:]``; returns what it printed as JSON."""
        script = "import json, sys\nfrom mlflow.tracking import MlflowClient\nclient = MlflowClient()\n" + \
            textwrap.dedent(code)
        done = self.run(host or self.head, ["python", "-c", script, *args])
        assert done.returncode == 0, done.stderr[-3000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def on(self, host: str, path: str) -> Path:
        """``path`` of ``host``'s own /tmp, read from outside it (its root, through /proc)."""
        return Path(f"/proc/{self.hosts.init_pids[host]}/root{path}")


def carried() -> dict:
    """What the hosts' commands keep of this process's environment: the checkout that pytest
    imports fmtrain from (PYTHONPATH), so that every host runs the same fmtrain."""
    return {name: os.environ[name] for name in ("PYTHONPATH",) if name in os.environ}


@pytest.fixture(scope="module")
def cluster():
    hosts = Hosts(2).up()
    head, worker = hosts.names
    address = hosts.address(head)
    token, password = secrets.token_hex(32), secrets.token_hex(12)
    admin = hosts.environment(
        **PORTS, **carried(), **HEALTH_CHECKS, TEAM="/tmp/team", WEED_VOLUME_MB="64", S3_HOST=address, MLFLOW_HOST=address,
        RAY_HEAD=address, FMTRAIN_S3_BUCKET=BUCKET, MLFLOW_WORKERS="2", RAY_CPUS="1",
        MLFLOW_AUTH_ADMIN_PASSWORD=secrets.token_hex(12), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        MEMBER_PASSWORD=password, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
        RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0", FMTRAIN_JOURNAL_DIR="/tmp/journal")
    member = hosts.environment(
        **carried(), MLFLOW_TRACKING_URI=f"http://{address}:{PORTS['MLFLOW_PORT']}", MLFLOW_TRACKING_USERNAME="alice",
        MLFLOW_TRACKING_PASSWORD=password, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token,
        RAY_ADDRESS=f"{address}:{PORTS['RAY_PORT']}", FMTRAIN_JOURNAL_DIR="/tmp/journal",
        FMTRAIN_STORE_WAIT_SECONDS="5")
    try:
        up = hosts.run(head, ["bash", "-c", f"{TEAM_SH} up alice && {TEAM_SH} ray-head"], env=admin,
                       timeout=900)
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        node = hosts.run(worker, [TEAM_SH, "ray-node"], env={**admin, "TEAM": "/tmp/node"}, timeout=600)
        assert node.returncode == 0, node.stdout[-3000:] + node.stderr[-3000:]
        bucket = {}
        for line in up.stdout.splitlines():
            if line.startswith("export AWS_"):
                bucket.update(word.split("=", 1) for word in shlex.split(line)[1:])
        yield Cluster(hosts, head, worker, admin, member, bucket)
    finally:
        hosts.down()


def test_every_host_imports_this_checkout(cluster):
    for host in (cluster.head, cluster.worker):
        done = cluster.run(host, ["python", "-c", "import fmtrain, socket; print(fmtrain.__file__, socket.gethostname())"])
        assert done.stdout.split() == [str(PROJECT / "fmtrain" / "__init__.py"), host], done.stderr


# Read on the head as alice: each run of an experiment (its status, tags and files), each file's
# bytes as the server serves it and as the bucket holds it (boto3 with the administrator's keys).
RUNS = """
import hashlib, os, tempfile, boto3
experiment = client.get_experiment_by_name(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=sys.argv[2], aws_access_key_id=sys.argv[3],
                  aws_secret_access_key=sys.argv[4], region_name="us-east-1")
def digest(data):
    return hashlib.sha256(data).hexdigest()
found = []
for run in client.search_runs([experiment.experiment_id]):
    files = {}
    prefix = run.info.artifact_uri.split("mlflow-artifacts:/", 1)[1].lstrip("/")
    for item in client.list_artifacts(run.info.run_id):
        if item.is_dir:
            continue
        with tempfile.TemporaryDirectory() as folder:
            served = open(client.download_artifacts(run.info.run_id, item.path, folder), "rb").read()
        try:
            stored = s3.get_object(Bucket=sys.argv[5], Key=f"{prefix}/{item.path}")["Body"].read()
        except s3.exceptions.NoSuchKey:
            stored = b""
        files[item.path] = [digest(served), digest(stored)]
    steps = {key: [m.step for m in client.get_metric_history(run.info.run_id, key)] for key in ("loss", "val_loss")}
    found.append(dict(id=run.info.run_id, name=run.info.run_name, status=run.info.status, tags=run.data.tags,
                      metrics=run.data.metrics, files=files, steps=steps))
print(json.dumps(found))
"""


def runs_of(cluster: Cluster, experiment: str) -> list[dict]:
    bucket = cluster.bucket
    return cluster.query(RUNS, experiment, bucket["AWS_ENDPOINT_URL"], bucket["AWS_ACCESS_KEY_ID"],
                         bucket["AWS_SECRET_ACCESS_KEY"], bucket["FMTRAIN_S3_BUCKET"])


def server_log(cluster: Cluster) -> str:
    """The end of the MLflow server's log on the head, for a failure's message."""
    return cluster.on(cluster.head, "/tmp/team/mlflow.log").read_text()[-4000:]


def host_of(run: dict) -> str:
    """The host whose process trained the run, from its tags."""
    return run["tags"]["fmtrain.process"].rpartition(":")[0]


def complete(run: dict) -> bool:
    """Every file of the run is an object in the bucket, the bytes the server serves."""
    return all(served == stored for served, stored in run["files"].values())


def test_a_sweep_on_the_head_trains_its_children_on_both_hosts(cluster):
    done = cluster.fmtrain(cluster.head, "sweep", "--configs", "adam,rmsprop-val", "--workers", "2", "--epochs", "2",
                           *SMALL, "--experiment", "sweep")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:] + server_log(cluster)
    runs = runs_of(cluster, "sweep")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r["tags"]]
    children = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
    assert sorted(r["name"] for r in children) == ["adam", "rmsprop-val"]
    assert sorted(host_of(r) for r in children) == sorted([cluster.head, cluster.worker])
    for run in children:
        assert run["status"] == "FINISHED" and run["steps"] == {"loss": [0, 1], "val_loss": [0, 1]}
        assert {"model-whole.keras", "history.csv"} <= set(run["files"]), run["files"]
        assert any(path.endswith(".png") for path in run["files"]), run["files"]
        assert complete(run), run["files"]


def test_a_search_on_the_head_trains_its_trials_on_both_hosts(cluster):
    done = cluster.fmtrain(cluster.head, "tune", "--trials", "2", "--max-concurrent", "2", "--epochs", "2", *SMALL,
                           "--experiment", "search")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    runs = runs_of(cluster, "search")
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r["tags"]]
    trials = [r for r in runs if r["tags"].get("mlflow.parentRunId") == parent["id"]]
    assert sorted(r["tags"]["fmtrain.tune.trial"] for r in trials) == ["0", "1"]
    assert sorted(host_of(r) for r in trials) == sorted([cluster.head, cluster.worker])
    for run in (parent, *trials):
        assert run["status"] == "FINISHED" and "fmtrain.error" not in run["tags"]
        assert complete(run), run["files"]


STATUS = """
run = client.get_run(sys.argv[1])
print(json.dumps(dict(status=run.info.status, tags=run.data.tags)))
"""


def test_a_run_whose_bucket_dies_waits_in_its_journal_until_sync(cluster):
    """SeaweedFS killed under a run on the worker: its files wait in the worker's journal, the
    run never FINISHED without them; reap on the head says where the journal waits; SeaweedFS
    started again, `fmtrain sync` on the worker completes the run."""
    train = ["fmtrain", "train", "--config", "adam", "--epochs", "6",
             *[arg for arg in SMALL if arg != "--quiet"], "--experiment", "outage"]
    job = Process(cluster.hosts.command(cluster.worker, train), env=cluster.member)
    try:
        job.expect("Epoch 3/6", timeout=300)
        killed = cluster.run(cluster.head, ["bash", "-c", 'kill -KILL -- "-$(cat /tmp/team/s3.pid)"'], env=cluster.admin)
        assert killed.returncode == 0, killed.stderr
        assert job.wait(timeout=600) == 1, "\n".join(job.lines[-20:] + job.err[-20:])
    finally:
        if job.popen.poll() is None:
            os.killpg(job.popen.pid, signal.SIGKILL)
    (line,) = job.err[-1:]
    run_id = re.search(r"fmtrain: error: run (\w+) \(adam\) ran to its end, but .* its records wait in "
                       r"/tmp/journal/(\w+): run `fmtrain sync \2` once the store is back", line).group(1)
    waiting = cluster.query(STATUS, run_id)
    assert waiting["status"] == "RUNNING"  # never FINISHED without its files
    assert waiting["tags"]["fmtrain.journal.waits"] == f"{cluster.worker}:/tmp/journal/{run_id}"
    reaped = cluster.fmtrain(cluster.head, "reap", "--stale-after", "0", "--experiment", "outage", "--yes")
    assert reaped.returncode == 0, reaped.stderr[-3000:]
    assert f"{run_id}  adam  its journal waits on host {cluster.worker} in /tmp/journal/{run_id}: " \
           f"`fmtrain sync {run_id}` there ends it, not reap" in reaped.stdout, reaped.stdout
    assert cluster.query(STATUS, run_id)["status"] == "RUNNING"

    again = cluster.run(cluster.head, [TEAM_SH, "s3"], env=cluster.admin)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    synced = cluster.fmtrain(cluster.worker, "sync", run_id)
    assert synced.returncode == 0, synced.stdout[-3000:] + synced.stderr[-3000:]
    assert "the run is FINISHED" in synced.stdout, synced.stdout
    (run,) = [run for run in runs_of(cluster, "outage") if run["id"] == run_id]
    assert run["status"] == "FINISHED" and run["steps"] == {"loss": list(range(6)), "val_loss": list(range(6))}
    assert {"model-whole.keras", "history.csv"} <= set(run["files"]) and complete(run), run["files"]
    assert not cluster.on(cluster.worker, f"/tmp/journal/{run_id}").exists()

def test_a_child_whose_host_is_cut_off_journals_there_and_goes_on_on_the_head(cluster):
    """Last: the worker's cable stays cut (the hosts end after it). Its child keeps training there,
    its records in the worker's own journal; the head notices the node lost in seconds, and the
    child's run continues on the head from its last epoch in the store, each epoch once."""
    sweep = ["fmtrain", "sweep", "--configs", "adam,rmsprop-val", "--workers", "2", "--epochs", "8",
             *[arg for arg in SMALL if arg != "--quiet"], "--experiment", "cut"]
    job = Process(cluster.hosts.command(cluster.head, sweep), env=cluster.member)
    try:
        while True:  # the child the worker trains, once two of its epochs are in the store
            found = WORKER_LINE.search(job.expect("Epoch 3/8", timeout=300))
            if found and found.group(3) == cluster.hosts.address(cluster.worker):
                name = found.group(1)
                break
        cluster.hosts.cut(cluster.worker)
        cut = time.monotonic()
        again = job.expect(f"{name}: its worker died; Ray runs it again here", timeout=300)
        noticed = time.monotonic() - cut
        run_id = re.search(r"and run (\w+) goes on", again).group(1)
        journal = cluster.on(cluster.worker, f"/tmp/journal/{run_id}/journal.jsonl")
        deadline = time.monotonic() + 120
        while not journal.exists() and time.monotonic() < deadline:
            time.sleep(0.5)  # polling the worker's own disk for its journal
        journaled = [json.loads(line) for line in journal.read_text().splitlines()] if journal.exists() else []
        assert job.wait(timeout=600) == 0, "\n".join(job.lines[-20:] + job.err[-20:])
    finally:
        if job.popen.poll() is None:
            os.killpg(job.popen.pid, signal.SIGKILL)
    print(f"the head continued the child {noticed:.1f} s after the cut")
    assert any(entry["op"] == "batch" and entry.get("metrics") for entry in journaled), journaled
    runs = {run["id"]: run for run in runs_of(cluster, "cut")}
    continued = runs[run_id]
    assert continued["status"] == "FINISHED" and "fmtrain.error" not in continued["tags"]
    assert host_of(continued) == cluster.head
    (resume,) = json.loads(continued["tags"]["fmtrain.resumes"])
    assert resume["from_epoch"] >= 2, resume
    assert continued["steps"] == {"loss": list(range(8)), "val_loss": list(range(8))}  # each epoch once
    assert complete(continued), continued["files"]

    # Plugged back, the worker's journal is synced there: none of the epochs that the continued
    # run holds is written again, nor its tags or end.
    cluster.hosts.plug(cluster.worker)
    journaled = [json.loads(line) for line in journal.read_text().splitlines()]  # its training ended meanwhile
    epochs = {metric[3] for entry in journaled if entry["op"] == "batch" for metric in entry.get("metrics", [])
              if metric[0] == "loss"}
    assert epochs and max(epochs) == 7, epochs  # it trained on to its last epoch, into its journal
    synced = cluster.fmtrain(cluster.worker, "sync", run_id)
    assert synced.returncode == 0, synced.stdout[-3000:] + synced.stderr[-3000:]
    assert f"run {run_id}: skipped {len(epochs)} epoch(s)" in synced.stdout, synced.stdout
    assert "the run is FINISHED" in synced.stdout, synced.stdout
    after = {run["id"]: run for run in runs_of(cluster, "cut")}[run_id]
    assert after["steps"] == continued["steps"] and after["metrics"] == continued["metrics"]
    assert after["status"] == "FINISHED" and host_of(after) == cluster.head and "fmtrain.error" not in after["tags"]
    assert after["files"] == continued["files"]
    assert not cluster.on(cluster.worker, f"/tmp/journal/{run_id}").exists()
