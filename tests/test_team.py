"""docs/team.md, followed word for word on loopback: PostgreSQL from Debian's package, an `mlflow
server` on it with proxied artifacts and basic auth, a Ray head and a second Ray node, all through
scripts/team.sh; then a parallel sweep on the cluster, a registered champion evaluated by alias, a
search on the cluster, four trainings at once, wrong credentials, eight simulated trainers for
30 s (benchmarks/load.py), and last a sweep whose second node dies under a child. Everything lives
in a temporary folder and is stopped as the page says.
"""

import contextlib
import importlib.util
import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
from pathlib import Path

import mlflow
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
ADMIN = [
    "scripts/team.sh postgres",
    "scripts/team.sh ini",
    "scripts/team.sh server",
    "MEMBER_PASSWORD='alice chooses' scripts/team.sh user alice",
    'export RAY_AUTH_MODE=token RAY_AUTH_TOKEN=$(python -c "import secrets; print(secrets.token_hex(32))")',
    "scripts/team.sh ray-head",
]
RAY_NODE = "RAY_CPUS=1 scripts/team.sh ray-node"
STOP = ["scripts/team.sh stop ray-node", "scripts/team.sh stop ray-head server postgres"]
# The member's block stands alone: the values the administrator gives are written in it, and
# the test puts its own (port, password, token) in their place.
USER_ENV = ("export MLFLOW_TRACKING_URI=http://127.0.0.1:5000 MLFLOW_TRACKING_USERNAME=alice "
            "MLFLOW_TRACKING_PASSWORD='alice chooses'\n"
            "export RAY_AUTH_MODE=token RAY_AUTH_TOKEN='the team token' RAY_ADDRESS=127.0.0.1:6379")
SWEEP = "fmtrain sweep --configs rmsprop-val,adam --seeds 2 --workers 2 --register_best fashion-mnist"
EVALUATE = "fmtrain evaluate --model_uri models:/fashion-mnist@champion"
TRAIN = "fmtrain train --config adam"
TUNE = "fmtrain tune --trials 4 --max-concurrent 2"
DOC_LINES = [*ADMIN, RAY_NODE, *STOP, *USER_ENV.splitlines(), SWEEP, EVALUATE, TRAIN, TUNE]


def test_the_page_holds_the_commands_these_tests_run():
    page = (PROJECT / "docs" / "team.md").read_text()
    missing = [line for line in DOC_LINES if line not in page]
    assert missing == []


def shell(line: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, **kwargs)


@pytest.fixture(scope="module")
def team():
    """docs/team.md's team, started and stopped by its commands.

    Yields the environment of the administrator's terminal. The password and the token are the
    test's own; with the team's folder in a temporary folder, nothing else on the machine is touched.
    """
    folder = Path(tempfile.mkdtemp(prefix="team", dir="/tmp"))
    os.chmod(folder, 0o755)  # the postgres user reaches $TEAM through it
    names = dict(TEAM=str(folder / "team"), PGPORT=str(free_port()), MLFLOW_PORT=str(free_port()),
                 MLFLOW_WORKERS="4", RAY_PORT=str(free_port()), RAY_HEAD="127.0.0.1",
                 MLFLOW_AUTH_ADMIN_PASSWORD=secrets.token_hex(12), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.update(names, PYTHONUNBUFFERED="1", RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0")
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
        yield env
    finally:
        for line in STOP:
            subprocess.run(["bash", "-c", line], env=env, cwd=PROJECT, timeout=300)
        kill_processes_mentioning(str(folder))  # what a failed start may have left
        shutil.rmtree(folder, ignore_errors=True)


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


def _load_benchmark():
    spec = importlib.util.spec_from_file_location("load_benchmark", PROJECT / "benchmarks" / "load.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def test_eight_simulated_trainers_for_30_s_get_no_error_and_lose_nothing(team, alice):
    """benchmarks/load.py's trainers (a real run's requests, in its order and sizes) against the
    documented configuration; a fresh client then reads every finished run back complete."""
    load = _load_benchmark()
    url, auth = f"http://127.0.0.1:{team['MLFLOW_PORT']}", ("alice", team["ALICE_PASSWORD"])
    alice.create_experiment("load")
    result = load.load(url, auth, trainers=8, seconds=30, epochs=20, experiment="load")
    assert result["errors"] == []
    assert len(result["runs"]) >= 8  # every trainer finished at least the run in hand
    assert load.verify(url, auth, result["runs"], epochs=20) == []
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
    """Last in this file: it kills the second node (SIGKILL to each of its own processes, as a
    machine that dies; `ray stop` would end both loopback nodes), and starts it again after."""
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
