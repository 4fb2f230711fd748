"""What the resumable state costs each epoch, and how far a resumed run ends from one never killed.

    python benchmarks/resume_cost.py --backend jax --epochs 4 --kill-after 2 [--limit 0] [--cost]
        [--server http://127.0.0.1:5000 --no-compare]

With ``--cost``: one run in this process, into a sqlite store in a temporary folder (or the
tracking server ``--server``), timing each
epoch's ``StateSaver.on_epoch_end`` (collecting the variables, writing the ``.npz``, logging it
as the run's artifact) and the state file's bytes. Then, always: ``fmtrain train`` killed with
SIGKILL once epoch ``--kill-after`` began, ``fmtrain train --resume``, and the same command never
killed; printed: the largest absolute difference of each per-epoch metric and single metric.
Timings on a shared machine are noisy; the differences are not.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def measure_cost(args, folder: Path) -> None:
    os.environ["MLFLOW_TRACKING_URI"] = args.server or f"sqlite:///{folder / 'cost.db'}"
    os.chdir(folder)
    from fmtrain.learning import backend, configs, data

    backend.use(args.backend)
    from fmtrain.learning import resumption, training_state
    from fmtrain.tracking import store
    from fmtrain.workflows.train import train_run

    seconds, sizes = [], []
    saver_end, save = resumption.StateSaver.on_epoch_end, training_state.TrainingState.save

    def timed_end(self, epoch, logs=None):
        start = time.perf_counter()
        saver_end(self, epoch, logs)
        seconds.append(time.perf_counter() - start)

    def sized_save(self, where):
        path = save(self, where)
        sizes.append(path.stat().st_size)
        return path

    resumption.StateSaver.on_epoch_end, training_state.TrainingState.save = timed_end, sized_save
    config = configs.resolve("early-stopping", {"epochs": args.epochs, "limit": args.limit,
                                                "backend": args.backend, "patience": "none"})
    splits = data.load_splits(None, config.limit)
    store.open_store("cost")
    outcome = train_run(config, "early-stopping", splits)
    epoch = outcome.result.epoch_seconds
    print(f"state per epoch ({args.backend}, {len(splits.y_train)} training images): "
          f"{', '.join(f'{s:.3f}' for s in seconds)} s (median {sorted(seconds)[len(seconds) // 2]:.3f} s) "
          f"of epochs of {', '.join(f'{s:.1f}' for s in epoch)} s; {sizes[-1]:,} bytes per state file")


def fmtrain(env, folder, *argv) -> subprocess.CompletedProcess:
    done = subprocess.run(["fmtrain", "train", "--quiet", *argv], env=env, cwd=folder, capture_output=True,
                          text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    return done


def compare(args, folder: Path) -> None:
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / f'{args.backend}.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=uri, PYTHONUNBUFFERED="1")
    common = ["--limit", str(args.limit), "--epochs", str(args.epochs), "--backend", args.backend,
              "--patience", "none"]
    job = subprocess.Popen(["fmtrain", "train", *common, "--experiment", "killed"], env=env, cwd=folder,
                           stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    for line in job.stdout:
        if line.startswith(f"Epoch {args.kill_after + 1}/"):
            job.send_signal(signal.SIGKILL)
            break
    job.wait()
    client = MlflowClient(uri)
    (killed,) = client.search_runs([client.get_experiment_by_name("killed").experiment_id])
    resumed = fmtrain(env, folder, "--resume", killed.info.run_id)
    fmtrain(env, folder, *common, "--experiment", "whole")
    (whole,) = client.search_runs([client.get_experiment_by_name("whole").experiment_id])
    a, b = client.get_run(killed.info.run_id), whole
    print(resumed.stdout.splitlines()[0])
    worst = {}
    for key in ("loss", "accuracy", "val_loss", "val_accuracy"):
        one = {m.step: m.value for m in client.get_metric_history(a.info.run_id, key)}
        two = {m.step: m.value for m in client.get_metric_history(b.info.run_id, key)}
        assert sorted(one) == sorted(two) == list(range(args.epochs)), (key, sorted(one))
        worst[key] = max(abs(one[step] - two[step]) for step in one)
    for key in ("final_val_loss", "final_val_accuracy", "model_val_accuracy", "stopped_epoch", "best_epoch"):
        worst[key] = abs(a.data.metrics[key] - b.data.metrics[key])
    print(f"{args.backend}: largest |resumed - never killed| per metric: "
          + ", ".join(f"{key} {value:.3g}" for key, value in worst.items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", default="jax")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--kill-after", type=int, default=2, help="kill once this many epochs ended")
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--cost", action="store_true", help="also time the state's saving")
    parser.add_argument("--server", default=None, help="time it against this tracking server")
    parser.add_argument("--no-compare", dest="compare", action="store_false",
                        help="only time the state's saving")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="resume-cost-") as folder:
        if args.compare:
            compare(args, Path(folder))
        if args.cost:
            measure_cost(args, Path(folder))


if __name__ == "__main__":
    sys.exit(main())
