"""README's "Team setup", followed word for word on loopback: PostgreSQL from Debian's package, an
`mlflow server` on it with proxied artifacts and basic auth, a Ray head and a second Ray node; then
a parallel sweep on the cluster, a registered champion evaluated by alias, a search on the
cluster, four trainings at once and wrong credentials. Every server lives in a temporary folder and is stopped at the end.
"""

import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import mlflow
import pytest
from mlflow.tracking import MlflowClient

from conftest import PROJECT, Process, free_port, kill_processes_mentioning, wait_for_http

# README's commands, each run as written by `bash -c` with README's variables set; a test checks
# that README still holds every one of them.
POSTGRES_INIT = [
    'mkdir -p "$TEAM" && chown postgres "$TEAM"',
    'runuser -u postgres -- /usr/lib/postgresql/15/bin/initdb -D "$TEAM/pg" -U postgres -A trust',
]
POSTGRES = ('runuser -u postgres -- /usr/lib/postgresql/15/bin/postgres -D "$TEAM/pg" -p "$PGPORT" -k "$TEAM" '
            '-c listen_addresses=127.0.0.1')
CREATEDB = 'runuser -u postgres -- /usr/lib/postgresql/15/bin/createdb -h 127.0.0.1 -p "$PGPORT" -U postgres mlflow'
AUTH_INI = """[mlflow]
default_permission = READ
database_uri = sqlite:///basic_auth.db
admin_username = admin
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
"""
MLFLOW_SERVER = ('cd "$TEAM" && MLFLOW_AUTH_CONFIG_PATH=basic_auth.ini mlflow server --app-name basic-auth '
                 '--backend-store-uri "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/mlflow" '
                 '--artifacts-destination "$TEAM/artifacts" --host 127.0.0.1 --port "$MLFLOW_PORT" --workers 1')
CREATE_USER = ('MLFLOW_TRACKING_USERNAME=admin MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD" python -c '
               '"import sys, mlflow.server; mlflow.server.get_app_client(\'basic-auth\', tracking_uri=sys.argv[1])'
               '.create_user(sys.argv[2], sys.argv[3])" "http://127.0.0.1:$MLFLOW_PORT" alice "$ALICE_PASSWORD"')
RAY_HEAD = ('ray start --head --port "$RAY_PORT" --num-cpus 2 --include-dashboard=false --disable-usage-stats '
            '--block')
RAY_NODE = 'ray start --address "$RAY_HEAD:$RAY_PORT" --num-cpus 1 --disable-usage-stats --block'
USER_ENV = ('export MLFLOW_TRACKING_URI="http://127.0.0.1:$MLFLOW_PORT" MLFLOW_TRACKING_USERNAME=alice '
            'MLFLOW_TRACKING_PASSWORD="$ALICE_PASSWORD"')
SWEEP = ('fmtrain sweep --configs rmsprop-val,adam --seeds 2 --workers 2 --ray-address "$RAY_HEAD:$RAY_PORT" '
         '--register_best fashion-mnist')
EVALUATE = "fmtrain evaluate --model_uri models:/fashion-mnist@champion"
TRAIN = "fmtrain train --config adam"
TUNE = 'fmtrain tune --trials 4 --max-concurrent 2 --ray-address "$RAY_HEAD:$RAY_PORT"'
README_LINES = [*POSTGRES_INIT, POSTGRES, CREATEDB, *AUTH_INI.splitlines(), MLFLOW_SERVER, CREATE_USER,
                RAY_HEAD, RAY_NODE, USER_ENV, SWEEP, EVALUATE, TRAIN, TUNE]


def test_readme_holds_the_commands_these_tests_run():
    readme = (PROJECT / "README.md").read_text()
    missing = [line for line in README_LINES if line not in readme]
    assert missing == []


def shell(line: str, env: dict, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", "-c", line], env=env, capture_output=True, text=True, **kwargs)


def stop(process: Process, signum=signal.SIGTERM, timeout: float = 90) -> None:
    """Stop a server started in its own session: its whole process group, then SIGKILL what is left."""
    if process.popen.poll() is None:
        os.killpg(process.popen.pid, signum)
        try:
            process.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(process.popen.pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


@pytest.fixture(scope="module")
def team():
    """README's team: PostgreSQL, the MLflow server with basic auth, a Ray head and a second node.

    Yields the variables README's commands use. Ray's processes get a temporary folder of their
    own (RAY_TMPDIR) and a token of their own (RAY_AUTH_TOKEN), so that nothing else on the
    machine is touched, and a stop that does not wait for draining.
    """
    folder = Path(tempfile.mkdtemp(prefix="team", dir="/tmp"))
    ray_tmp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    names = dict(TEAM=str(folder / "team"), PGPORT=str(free_port()), MLFLOW_PORT=str(free_port()),
                 RAY_PORT=str(free_port()), RAY_HEAD="127.0.0.1",
                 MLFLOW_AUTH_ADMIN_PASSWORD=secrets.token_hex(12), MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
                 ALICE_PASSWORD=secrets.token_hex(12), RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "RAY_"))}
    env.update(names, PYTHONUNBUFFERED="1", RAY_TMPDIR=ray_tmp, RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S="0",
               RAY_USAGE_STATS_ENABLED="0")
    os.chmod(folder, 0o755)  # the postgres user reaches $TEAM through it
    servers: list[tuple[Process, int]] = []

    def serve(line: str, signum=signal.SIGTERM) -> Process:
        process = Process(["bash", "-c", line], env=env, cwd=folder)
        servers.append((process, signum))
        return process

    try:
        for line in POSTGRES_INIT:
            done = shell(line, env, cwd=folder, timeout=120)
            assert done.returncode == 0, done.stderr[-2000:]
        postgres = serve(POSTGRES, signal.SIGINT)  # SIGINT: PostgreSQL's fast shutdown
        head = serve(RAY_HEAD)  # starts while PostgreSQL does
        deadline = time.monotonic() + 120
        while shell('pg_isready -q -h 127.0.0.1 -p "$PGPORT"', env).returncode != 0:
            assert postgres.popen.poll() is None and time.monotonic() < deadline, postgres.err[-20:]
            time.sleep(0.5)
        done = shell(CREATEDB, env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        (Path(names["TEAM"]) / "basic_auth.ini").write_text(AUTH_INI)
        server = serve(MLFLOW_SERVER)  # a new database: MLflow creates its tables first (a minute)
        head.expect("Ray runtime started", timeout=300)
        node = serve(RAY_NODE)
        node.expect("Ray runtime started", timeout=300)
        try:
            wait_for_http(f"http://127.0.0.1:{names['MLFLOW_PORT']}/health", server.popen, timeout=600)
        except AssertionError as error:  # say why: the server's own last lines
            raise AssertionError(f"{error}:\n" + "\n".join(server.err[-30:])) from None
        done = shell(CREATE_USER, env, timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        yield env
    finally:
        for process, signum in reversed(servers):
            stop(process, signum)
        kill_processes_mentioning(ray_tmp)
        shutil.rmtree(folder, ignore_errors=True)
        shutil.rmtree(ray_tmp, ignore_errors=True)


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
    done = shell(f"{USER_ENV} && {small(SWEEP, real_data_dir)}", team, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    assert f"up to 2 at once on the Ray cluster at 127.0.0.1:{team['RAY_PORT']}" in done.stdout
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
    evaluated = shell(f"{USER_ENV} && {EVALUATE} --data_dir {real_data_dir}", team, cwd=tmp_path, timeout=600)
    assert evaluated.returncode == 0, evaluated.stderr[-3000:]
    assert "evaluated models:/fashion-mnist@champion (fashion-mnist version 1) on 10000 test images" in \
        evaluated.stdout


def test_a_search_on_the_cluster_lands_on_the_team_server(team, alice, tmp_path, real_data_dir):
    line = f"{USER_ENV} && {small(TUNE, real_data_dir)} --experiment search"
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
    line = f"{USER_ENV} && {TRAIN} --limit 500 --epochs 1 --quiet --data_dir {real_data_dir} --experiment four"
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
    line = f"{USER_ENV} && MLFLOW_TRACKING_PASSWORD=wrong {small(command, real_data_dir)}"
    done = shell(line, team, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.strip().splitlines() == [
        f"fmtrain: error: tracking store http://127.0.0.1:{team['MLFLOW_PORT']} refused the credentials; "
        "check MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD"]
    assert len(alice.search_runs([e.experiment_id for e in alice.search_experiments()])) == before
