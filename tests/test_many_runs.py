"""A store of 20,000 runs in one experiment: every read pages, so `reap`, `reap --yes` and
`compare` see them all (MLflow answers at most one page of results per request).

The runs are made once per module: one child is created with the client, and 19,999 copies of
its rows (run, tags, params; new ids, names, seeds, start times and heartbeats) are inserted in
one transaction into MLflow's own tables, so the store holds what 20,000 `create_run` calls would
leave, in about 2 s instead of 2 minutes. Every child is RUNNING and silent for 40 minutes, but
the newest 200 (the last page, oldest first) for 2 hours: `reap --stale-after 5400 --yes` must
page through all 20,000 to end exactly those (ending all 20,000 takes many minutes on sqlite).
"""

import csv
import subprocess
import time
import uuid

import pytest
import sqlalchemy
from mlflow.tracking import MlflowClient

from conftest import fmtrain_here

RUNS = 20_000
LAST_PAGE = 200  # the newest runs, silent longest


@pytest.fixture(scope="module")
def big_store(tmp_path_factory):
    """A sqlite store whose experiment ``big`` holds a sweep parent and 20,000 stale children."""
    folder = tmp_path_factory.mktemp("big")
    uri = f"sqlite:///{folder}/mlflow.db"
    client = MlflowClient(uri)
    experiment = client.create_experiment("big", artifact_location=str(folder / "artifacts"))
    parent = client.create_run(experiment, run_name="sweep", tags={"fmtrain.sweep.configs": "adam"}).info.run_id
    client.set_terminated(parent)
    long_ago = str(time.time() - 2400)
    template = client.create_run(experiment, run_name="adam/seed-0", tags={
        "mlflow.parentRunId": parent, "fmtrain.config": "adam", "fmtrain.heartbeat": long_ago})
    client.log_param(template.info.run_id, "seed", "0")
    started = time.perf_counter()
    copies = _copy_run(uri, template.info.run_id, RUNS - 1)
    print(f"\n{RUNS - 1} runs copied in {time.perf_counter() - started:.1f} s")
    return dict(uri=uri, folder=folder, parent=parent, experiment=experiment, ids={template.info.run_id, *copies},
                last_page=set(copies[-LAST_PAGE:]))


def _copy_run(uri: str, run_id: str, count: int) -> list[str]:
    """``count`` copies of ``run_id``'s rows, each with a new id, name, seed and start time."""
    engine = sqlalchemy.create_engine(uri)
    meta = sqlalchemy.MetaData()
    runs, tags, params = (sqlalchemy.Table(name, meta, autoload_with=engine) for name in ("runs", "tags", "params"))
    with engine.begin() as db:
        run = dict(db.execute(runs.select().where(runs.c.run_uuid == run_id)).mappings().one())
        run_tags = [dict(row) for row in db.execute(tags.select().where(tags.c.run_uuid == run_id)).mappings()]
        run_params = [dict(row) for row in db.execute(params.select().where(params.c.run_uuid == run_id)).mappings()]
        new_runs, new_tags, new_params, ids = [], [], [], []
        for number in range(1, count + 1):
            new_id = uuid.uuid4().hex
            ids.append(new_id)
            name = f"adam/seed-{number}"
            new_runs.append({**run, "run_uuid": new_id, "name": name, "start_time": run["start_time"] + number,
                             "artifact_uri": run["artifact_uri"].replace(run_id, new_id)})
            values = {"mlflow.runName": name, "fmtrain.seed": str(number)}
            if number > count - LAST_PAGE:
                values["fmtrain.heartbeat"] = str(time.time() - 7200)
            new_tags += [{**tag, "run_uuid": new_id, "value": values.get(tag["key"], tag["value"])}
                         for tag in run_tags]
            new_params += [{**param, "run_uuid": new_id, "value": str(number)} for param in run_params]
        db.execute(runs.insert(), new_runs)
        db.execute(tags.insert(), new_tags)
        db.execute(params.insert(), new_params)
    engine.dispose()
    return ids


def fmtrain(uri: str, cwd, *args: str) -> subprocess.CompletedProcess:
    started = time.perf_counter()
    done = fmtrain_here(args, cwd=cwd, env={**_env(), "MLFLOW_TRACKING_URI": uri})  # in this process
    print(f"fmtrain {' '.join(args)}: {time.perf_counter() - started:.1f} s")
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def _env() -> dict:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}


def test_compare_shows_every_one_of_20000_children(big_store, tmp_path):
    fmtrain(big_store["uri"], tmp_path, "compare", big_store["parent"], "--output", "out")
    with open(tmp_path / "out" / "sweep-summary.csv") as table:
        rows = list(csv.DictReader(table))
    assert len(rows) == RUNS
    assert {row["run_id"] for row in rows} == big_store["ids"]


def test_reap_lists_all_20000_stale_runs_and_ends_those_of_the_last_page(big_store, tmp_path):
    listed = fmtrain(big_store["uri"], tmp_path, "reap", "--experiment", "big").stdout.splitlines()
    assert listed[-1] == f"{RUNS} stale run(s); end them KILLED with `fmtrain reap --yes`"
    assert {line.split()[0] for line in listed[:-1]} == big_store["ids"]

    ended = fmtrain(big_store["uri"], tmp_path, "reap", "--experiment", "big", "--stale-after", "5400",
                    "--yes").stdout.splitlines()
    assert {line.split()[0] for line in ended} == big_store["last_page"]
    assert all(line.endswith("-> KILLED") for line in ended)
    # The store's own rows, read directly: every child's status, the parent's apart.
    engine = sqlalchemy.create_engine(big_store["uri"])
    with engine.connect() as db:
        statuses = dict(db.execute(sqlalchemy.text("SELECT run_uuid, status FROM runs WHERE experiment_id = :e "
                                                   "AND run_uuid != :p"),
                                   {"e": int(big_store["experiment"]), "p": big_store["parent"]}).all())
    engine.dispose()
    assert len(statuses) == RUNS
    assert {run_id for run_id, status in statuses.items() if status == "KILLED"} == big_store["last_page"]
