"""Load benchmark of a team server: N simulated fmtrain trainers at once, then a check that
nothing was lost, in the store or in the bucket.

    python benchmarks/load.py                       # starts the documented team store itself
    python benchmarks/load.py --trainers 32 --seconds 60 --workers 4 --auth-cache 0

Without ``--url``, it starts the team's store as docs/team.md does (``scripts/team.sh up bench``:
PostgreSQL, SeaweedFS's S3, the MLflow server with basic auth, a member; in a temporary folder,
on free ports; run it as root, as that set-up is), reads the export lines it prints, and stops
it at the end (``scripts/team.sh down``). Each simulated trainer makes the HTTP requests a real
``fmtrain train`` run makes (counted from the server's access log of a run), in their order and
sizes: the experiment look-ups, the run's creation and tags, 17 params in one batch, the model
summary, one batch of 5 metrics per epoch, the logged model (its 6 files, 1 MB of Keras model
among them), the final metric batches, 6 run artifacts (three ~1 MB model files, two figures,
the history), the run's end. Every file is random bytes (as incompressible as a model's), sent
through the server, which writes it to the bucket; the trainer keeps its sha256. No training:
the trainers send back to back, so the server is under more load than trainers who spend
minutes on each epoch put on it.

For each N, trainers start runs for ``--seconds`` and then finish the run in hand. Printed: runs
finished per second, the p50 / p99 latency of each kind of request, and what the bucket holds.
The requests that start in the first ``--warmup`` seconds are timed apart (their number and the
slowest): all N trainers begin at once on a server whose caches are empty, and each of their first
requests checks the password's scrypt hash (its cache is per worker, and concurrent misses each
compute it), and each worker makes its S3 client.
At the end a fresh client reads every finished run back (FINISHED, 17 params, every epoch of
the 5 per-epoch metrics, the 6 artifacts; anything missing: the run is lost), and every file a
trainer sent is read from the bucket with boto3 and compared by its sha256 (one missing or
different: lost). With ``--url``, the bucket is the one that AWS_ENDPOINT_URL,
AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and FMTRAIN_S3_BUCKET name (the lines that
``scripts/team.sh up`` prints), its keys the artifacts' paths (the server's
``--artifacts-destination s3://BUCKET``).
"""

from __future__ import annotations

import argparse
import hashlib
import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from pathlib import Path

import requests

PROJECT = Path(__file__).resolve().parent.parent
API = "/api/2.0/mlflow"
PARAMS = ["backend", "batch_size", "checkpoint", "config", "data_source", "dropout_rate", "epochs",
          "learning_rate", "limit", "optimizer", "patience", "seed", "steps_per_execution",
          "train_size", "units", "val_size", "validation"]
EPOCH_METRICS = ["loss", "accuracy", "val_loss", "val_accuracy", "epoch_seconds"]
FINAL_METRICS = ["final_val_loss", "final_val_accuracy", "stopped_epoch", "epochs_run", "best_epoch",
                 "fit_seconds", "seconds_per_epoch", "best_checkpoint_val_loss"]
MODEL_FILES = [("requirements.txt", 47), ("MLmodel", 876), ("python_env.yaml", 120),
               ("conda.yaml", 150), ("data/keras_module.txt", 5), ("data/model.keras", 979_563)]
RUN_FILES = [("model-whole.keras", 979_563), ("model.weights.h5", 976_600), ("best-model.keras", 979_565),
             ("loss-curve.png", 25_362), ("accuracy-curve.png", 23_744), ("history.csv", 276)]


class Trainer:
    """One simulated ``fmtrain train``: its own HTTP session, the requests of one run each call."""

    def __init__(self, url: str, auth: tuple[str, str], experiment: str, epochs: int, timings, errors,
                 files: dict[str, str], cold: list[float] | None = None, counted_from: float = 0.0):
        self.url, self.experiment, self.epochs = url, experiment, epochs
        self.session = requests.Session()
        self.session.auth = auth
        self.timings, self.errors, self.files = timings, errors, files
        # A request that starts before ``counted_from`` (time.monotonic) is timed into ``cold``.
        self.cold, self.counted_from = cold, counted_from

    def call(self, kind: str, method: str, path: str, **kwargs):
        started = time.perf_counter()
        cold = self.cold is not None and time.monotonic() < self.counted_from
        try:
            response = self.session.request(method, self.url + path, timeout=120, **kwargs)
            response.raise_for_status()
        except requests.RequestException as error:
            body = error.response.text[:300] if error.response is not None else ""
            self.errors.append(f"{kind}: {error} {body}".strip())
            raise
        finally:
            (self.cold if cold else self.timings[kind]).append(time.perf_counter() - started)
        return response.json() if response.content else {}

    def put(self, kind: str, artifact_uri: str, name: str, size: int) -> None:
        """Upload ``size`` random bytes as ``name``; once the server answers, ``files`` holds
        their sha256 under the file's path (its key in the bucket)."""
        where = artifact_uri.split("mlflow-artifacts:", 1)[1].lstrip("/")
        data = os.urandom(size)
        self.call(kind, "PUT", f"/api/2.0/mlflow-artifacts/artifacts/{where}/{name}", data=data)
        self.files[f"{where}/{name}"] = hashlib.sha256(data).hexdigest()

    def batch(self, run_id: str, **body) -> None:
        self.call("log-batch", "POST", f"{API}/runs/log-batch", json={"run_id": run_id, **body})

    def metrics(self, run_id: str, names, step: int) -> None:
        now = int(time.time() * 1000)
        self.batch(run_id, metrics=[{"key": key, "value": 0.5, "timestamp": now, "step": step} for key in names])

    def run(self, number: int) -> str:
        """The requests of one run, in a real run's order; returns its run id."""
        experiment = self.call("experiment", "GET", f"{API}/experiments/get-by-name",
                               params={"experiment_name": self.experiment})["experiment"]["experiment_id"]
        self.call("experiment", "GET", f"{API}/experiments/get", params={"experiment_id": experiment})
        tags = [{"key": "fmtrain.config", "value": "early-stopping"}, {"key": "mlflow.source.type", "value": "LOCAL"}]
        info = self.call("run", "POST", f"{API}/runs/create", json={
            "experiment_id": experiment, "run_name": f"load-{number}", "start_time": int(time.time() * 1000),
            "tags": tags})["run"]["info"]
        run_id, artifacts = info["run_id"], info["artifact_uri"]
        for key, value in (("fmtrain.heartbeat", str(time.time())), ("fmtrain.process", f"load:{number}")):
            self.call("set-tag", "POST", f"{API}/runs/set-tag", json={"run_id": run_id, "key": key, "value": value})
        self.call("get-run", "GET", f"{API}/runs/get", params={"run_id": run_id})
        self.batch(run_id, params=[{"key": key, "value": "42"} for key in PARAMS])
        self.call("get-run", "GET", f"{API}/runs/get", params={"run_id": run_id})
        self.put("artifact", artifacts, "model_summary.txt", 1932)
        for epoch in range(self.epochs):
            self.metrics(run_id, EPOCH_METRICS, epoch)
        self.call("get-run", "GET", f"{API}/runs/get", params={"run_id": run_id})
        model = self.call("model", "POST", f"{API}/logged-models", json={
            "experiment_id": experiment, "name": "model", "source_run_id": run_id})["model"]["info"]
        self.call("model", "POST", f"{API}/runs/outputs", json={"run_id": run_id, "models": [
            {"model_id": model["model_id"], "step": 0}]})
        self.call("get-run", "GET", f"{API}/runs/get", params={"run_id": run_id})
        for key in ("loss", "val_loss", "accuracy", "val_accuracy"):
            self.call("history", "GET", f"{API}/metrics/get-history", params={"run_id": run_id, "metric_key": key})
        self.metrics(run_id, FINAL_METRICS, 0)
        self.call("model", "GET", f"{API}/logged-models/{model['model_id']}")
        for name, size in MODEL_FILES:
            self.put("artifact", model["artifact_uri"], name, size)
        self.call("model", "PATCH", f"{API}/logged-models/{model['model_id']}", json={
            "model_id": model["model_id"], "status": "LOGGED_MODEL_READY"})
        self.metrics(run_id, ["model_val_accuracy", "reload_whole_val_accuracy", "reload_weights_val_accuracy"], 0)
        self.metrics(run_id, ["reload_checks_passed"], 0)
        for name, size in RUN_FILES:
            self.put("artifact", artifacts, name, size)
        self.call("set-tag", "POST", f"{API}/runs/set-tag", json={
            "run_id": run_id, "key": "mlflow.note.content", "value": "a simulated run"})
        self.call("get-run", "GET", f"{API}/runs/get", params={"run_id": run_id})
        self.call("run", "POST", f"{API}/runs/update", json={
            "run_id": run_id, "status": "FINISHED", "end_time": int(time.time() * 1000)})
        self.call("get-run", "GET", f"{API}/runs/get", params={"run_id": run_id})
        return run_id


def load(url: str, auth, trainers: int, seconds: float, epochs: int, experiment: str,
         warmup: float = 0.0) -> dict:
    """``trainers`` threads making runs for ``seconds`` (each finishes the run in hand). The
    requests that start in the first ``warmup`` seconds are timed apart, in ``cold``."""
    timings: dict[str, list[float]] = defaultdict(list)
    errors: list[str] = []
    finished: list[str] = []
    files: dict[str, str] = {}
    cold: list[float] = []
    deadline = time.monotonic() + seconds
    counted_from = time.monotonic() + warmup

    def work(index: int) -> None:
        trainer = Trainer(url, auth, experiment, epochs, timings, errors, files, cold, counted_from)
        number = 0
        while time.monotonic() < deadline:
            number += 1
            try:
                finished.append(trainer.run(index * 100_000 + number))
            except requests.RequestException:
                pass  # counted in errors
            except Exception as error:  # noqa: BLE001 - a trainer that dies is an error, not a silent end
                errors.append(f"trainer {index}: {type(error).__name__}: {error}")
                return

    started = time.monotonic()
    threads = [threading.Thread(target=work, args=(index,), daemon=True) for index in range(trainers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return dict(trainers=trainers, elapsed=time.monotonic() - started, runs=list(finished),
                timings=timings, errors=errors, files=dict(files), warmup=warmup, cold=cold)


def verify(url: str, auth, run_ids: list[str], epochs: int) -> list[str]:
    """What a fresh client finds missing among ``run_ids``: one line per incomplete run."""
    os.environ.update(MLFLOW_TRACKING_USERNAME=auth[0], MLFLOW_TRACKING_PASSWORD=auth[1])
    from mlflow.tracking import MlflowClient

    client = MlflowClient(url)
    lost = []
    for run_id in run_ids:
        run = client.get_run(run_id)
        problems = []
        if run.info.status != "FINISHED":
            problems.append(run.info.status)
        if sorted(run.data.params) != sorted(PARAMS):
            problems.append(f"{len(run.data.params)} params")
        for key in EPOCH_METRICS:
            if len(client.get_metric_history(run_id, key)) != epochs:
                problems.append(f"{key} history")
        if {a.path for a in client.list_artifacts(run_id)} != {"model_summary.txt", *(n for n, _ in RUN_FILES)}:
            problems.append("artifacts")
        if problems:
            lost.append(f"{run_id}: {', '.join(problems)}")
    return lost


def verify_bucket(bucket: dict[str, str], files: dict[str, str]) -> tuple[int, list[str]]:
    """Every file in ``files`` (key: sha256) read from the bucket with boto3: the bytes they take
    there, and one line per file missing or different. ``bucket``: the export lines' variables
    (AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, FMTRAIN_S3_BUCKET)."""
    import boto3
    import botocore.exceptions

    s3 = boto3.client("s3", endpoint_url=bucket["AWS_ENDPOINT_URL"], region_name="us-east-1",
                      aws_access_key_id=bucket["AWS_ACCESS_KEY_ID"],
                      aws_secret_access_key=bucket["AWS_SECRET_ACCESS_KEY"])
    stored, lost = 0, []
    for key, digest in files.items():
        try:
            body = s3.get_object(Bucket=bucket["FMTRAIN_S3_BUCKET"], Key=key)["Body"].read()
        except botocore.exceptions.ClientError as error:
            lost.append(f"{key}: {error.response['Error']['Code']}")
            continue
        stored += len(body)
        if hashlib.sha256(body).hexdigest() != digest:
            lost.append(f"{key}: other bytes")
    return stored, lost


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))] if ordered else float("nan")


def table(results: list[dict], lost: dict[int, int]) -> str:
    """One Markdown row per result; ``lost``: runs and files lost, per number of trainers. A
    result with ``stored`` (the bytes its files take in the bucket) gets the bucket's columns;
    results with a warm-up get the slowest of its requests."""
    kinds = sorted({kind for result in results for kind in result["timings"]})
    bucket = all("stored" in result for result in results)
    warmup = max(result.get("warmup", 0) for result in results)
    header = ["trainers", "runs/s", "requests/s",
              *([f"first {warmup:g} s: requests, slowest (s)"] if warmup else []), "all p50 / p99 (s)",
              *[f"{kind} p50 / p99 (s)" for kind in kinds],
              *(["files in the bucket", "MB in the bucket"] if bucket else []), "errors", "lost"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for result in results:
        requests_done = sum(len(values) for values in result["timings"].values()) + len(result.get("cold", []))
        cells = [str(result["trainers"]), f"{len(result['runs']) / result['elapsed']:.2f}",
                 f"{requests_done / result['elapsed']:.1f}"]
        if warmup:
            cold = result.get("cold", [])
            cells.append(f"{len(cold)}, {max(cold, default=float('nan')):.2f}")
        every = [value for values in result["timings"].values() for value in values]
        cells.append(f"{percentile(every, 0.5):.2f} / {percentile(every, 0.99):.2f}")
        for kind in kinds:
            values = result["timings"].get(kind, [])
            cells.append(f"{percentile(values, 0.5):.2f} / {percentile(values, 0.99):.2f}")
        if bucket:
            cells += [str(len(result["files"])), f"{result['stored'] / 1e6:.1f}"]
        cells += [str(len(result["errors"])), str(lost[result["trainers"]])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


# The settings of scripts/team.sh that choose SeaweedFS's ports: its S3 gateway's, and its master's,
# volume server's and filer's (HTTP and gRPC each), and its metrics'.
S3_PORTS = ("S3_PORT", "S3_GRPC_PORT", "WEED_MASTER_PORT", "WEED_MASTER_GRPC_PORT", "WEED_VOLUME_PORT",
            "WEED_VOLUME_GRPC_PORT", "WEED_FILER_PORT", "WEED_FILER_GRPC_PORT", "WEED_METRICS_PORT")
# The variables of the bucket's export line.
BUCKET = ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "FMTRAIN_S3_BUCKET")


def team_environment(folder: Path, workers: int, auth_cache: int) -> dict:
    """The administrator's environment for scripts/team.sh in ``folder``, on free ports."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "AWS_"))}
    env.update({name: str(free_port()) for name in ("PGPORT", "MLFLOW_PORT", *S3_PORTS)})
    env.update(TEAM=str(folder / "team"), MLFLOW_WORKERS=str(workers), AUTH_CACHE_SECONDS=str(auth_cache),
               MLFLOW_AUTH_ADMIN_PASSWORD=secrets.token_hex(12),
               MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16), MEMBER_PASSWORD=secrets.token_hex(12))
    return env


def exported(output: str) -> dict[str, str]:
    """The variables of the ``export`` lines in ``output`` (what ``scripts/team.sh up`` prints)."""
    found = {}
    for line in output.splitlines():
        if line.startswith("export "):
            found.update(word.split("=", 1) for word in shlex.split(line)[1:])
    return found


def start_team(env: dict) -> tuple[str, tuple[str, str], dict[str, str]]:
    """The documented store (``scripts/team.sh up bench``); returns the server's URL, the member's
    credentials and the bucket's variables, all from the export lines it prints."""
    done = subprocess.run([str(PROJECT / "scripts" / "team.sh"), "up", "bench"], env=env, text=True,
                          stdout=subprocess.PIPE, check=True)
    print("\n".join(line for line in done.stdout.splitlines() if not line.startswith("export ")), flush=True)
    found = exported(done.stdout)
    return (found["MLFLOW_TRACKING_URI"], (found["MLFLOW_TRACKING_USERNAME"], found["MLFLOW_TRACKING_PASSWORD"]),
            {name: found[name] for name in BUCKET})



def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trainers", default="1,4,16,32,64", help="the N to measure, comma-separated")
    parser.add_argument("--seconds", type=float, default=45, help="how long trainers start runs, per N")
    parser.add_argument("--epochs", type=int, default=20, help="metric batches per run (the default's 20)")
    parser.add_argument("--warmup", type=float, default=10,
                        help="the first seconds, whose requests are timed apart (a cold server's caches)")
    parser.add_argument("--workers", type=int, default=4, help="the server's --workers (without --url)")
    parser.add_argument("--auth-cache", type=int, default=300, help="auth_cache_ttl_seconds (without --url)")
    parser.add_argument("--url", help="a running server instead (with --user, the password in "
                                      "MLFLOW_TRACKING_PASSWORD and the bucket's variables: "
                                      + ", ".join(BUCKET) + ")")
    parser.add_argument("--user", default=os.environ.get("MLFLOW_TRACKING_USERNAME"))
    options = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="load", dir="/tmp"))
    os.chmod(folder, 0o755)  # the postgres user reaches the team's folder through it
    env = None
    try:
        if options.url:
            url, auth = options.url, (options.user, os.environ["MLFLOW_TRACKING_PASSWORD"])
            bucket = {name: os.environ[name] for name in BUCKET}
        else:
            env = team_environment(folder, options.workers, options.auth_cache)  # stopped below, however it ends
            url, auth, bucket = start_team(env)
        experiment = f"load-{secrets.token_hex(4)}"
        requests.post(url + f"{API}/experiments/create", json={"name": experiment}, auth=auth,
                      timeout=60).raise_for_status()
        print(f"server {url}; {os.cpu_count()} cores; load average {os.getloadavg()[0]:.1f} at the start",
              flush=True)
        results, lost = [], {}
        for trainers in [int(n) for n in options.trainers.split(",")]:
            result = load(url, auth, trainers, options.seconds, options.epochs, experiment, options.warmup)
            runs_lost = verify(url, auth, result["runs"], options.epochs)
            result["stored"], files_lost = verify_bucket(bucket, result["files"])
            lost[trainers] = len(runs_lost) + len(files_lost)
            results.append(result)
            print(f"{trainers} trainers: {len(result['runs'])} runs in {result['elapsed']:.0f} s, "
                  f"{len(result['errors'])} errors {result['errors'][:3]}; {len(result['files'])} files "
                  f"({result['stored'] / 1e6:.1f} MB) in the bucket; lost: {len(runs_lost)} runs "
                  f"{runs_lost[:3]}, {len(files_lost)} files {files_lost[:3]}; "
                  f"load average {os.getloadavg()[0]:.1f}", flush=True)
        print(table(results, lost))
        return 1 if any(lost.values()) or any(r["errors"] for r in results) else 0
    finally:
        if env is not None:
            subprocess.run([str(PROJECT / "scripts" / "team.sh"), "down"], env=env)
        shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
