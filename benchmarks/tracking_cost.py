"""What dataset lineage and system metrics cost a run, on the full data.

1. Dataset inputs: the time of ``tracking.datasets.log_data_inputs`` for a training run's two
   splits (48,000 + 12,000 images: the digests of the arrays and one store request) and for an
   evaluation's test set (10,000), in an open run on a fresh sqlite store; median of N.
2. One system-metrics sample: the CPU time of what MLflow's sampling thread does every
   interval (collect the CPU, memory, disk and network figures, read the run's status from the
   store), median of N samples against a sqlite store.
3. System metrics: ``fmtrain train`` on the full data with ``--system_metrics SECONDS`` and with
   ``--system_metrics 0``, alternately, N pairs; fit time and wall time of each, their medians.

Nothing is asserted: timings on a shared machine are noisy.

    python benchmarks/tracking_cost.py [--repeats 5] [--pairs 3] [--epochs 2] [--seconds 2]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time


def dataset_cost(repeats: int) -> None:
    import mlflow

    from fmtrain.learning import data
    from fmtrain.tracking import datasets

    splits = data.load_splits()
    test_images, test_labels, source = data.load_test()
    with tempfile.TemporaryDirectory() as folder:
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        training, evaluation = [], []
        for _ in range(repeats):
            with mlflow.start_run():
                start = time.perf_counter()
                datasets.log_data_inputs(splits.source, datasets.split_inputs(splits))
                training.append(time.perf_counter() - start)
            with mlflow.start_run():
                start = time.perf_counter()
                datasets.log_data_inputs(source, [datasets.DataInput(datasets.TEST, test_images, test_labels)])
                evaluation.append(time.perf_counter() - start)
    print(f"dataset inputs, median of {repeats}: training run (train + validation) "
          f"{statistics.median(training) * 1000:.0f} ms, evaluation run (test) "
          f"{statistics.median(evaluation) * 1000:.0f} ms")
    print("  each: " + ", ".join(f"{t * 1000:.0f}" for t in training) + " ms / "
          + ", ".join(f"{t * 1000:.0f}" for t in evaluation) + " ms")


def sample_cost(repeats: int) -> None:
    import mlflow
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor
    from mlflow.tracking import MlflowClient

    with tempfile.TemporaryDirectory() as folder:
        mlflow.set_tracking_uri(f"sqlite:///{folder}/mlflow.db")
        with mlflow.start_run(log_system_metrics=False) as run:
            monitor = SystemMetricsMonitor(run.info.run_id)
            client = MlflowClient()
            spent = []
            for _ in range(repeats):
                start = time.process_time()
                monitor.collect_metrics()
                client.get_run(run.info.run_id)
                spent.append(time.process_time() - start)
    print(f"one system-metrics sample: {statistics.median(spent) * 1000:.1f} ms of CPU (median of "
          f"{repeats}); every 2 s that is {statistics.median(spent) / 2 * 100:.2f}% of one core")


def train_once(seconds: float, epochs: int, folder: str) -> tuple[float, float]:
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{folder}/mlflow.db")
    argv = ["fmtrain", "train", "--epochs", str(epochs), "--quiet", "--system_metrics", str(seconds)]
    start = time.perf_counter()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, check=True)
    wall = time.perf_counter() - start
    fit = float(re.search(r"fit ([\d.]+) s", done.stdout).group(1))
    return fit, wall


def system_metrics_cost(pairs: int, epochs: int, seconds: float) -> None:
    results = {seconds: [], 0.0: []}
    with tempfile.TemporaryDirectory() as folder:
        for index in range(pairs):
            order = (seconds, 0.0) if index % 2 == 0 else (0.0, seconds)
            for value in order:
                results[value].append(train_once(value, epochs, folder))
                fit, wall = results[value][-1]
                print(f"  pair {index + 1}: system_metrics {value:g}: fit {fit:.1f} s, wall {wall:.1f} s",
                      flush=True)
    for value, rows in results.items():
        print(f"system_metrics {value:g}: median fit {statistics.median(r[0] for r in rows):.1f} s, "
              f"median wall {statistics.median(r[1] for r in rows):.1f} s ({len(rows)} runs, "
              f"{epochs} epochs on the full data)")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--seconds", type=float, default=2.0)
    parser.add_argument("--skip-training", action="store_true")
    arguments = parser.parse_args(argv)
    dataset_cost(arguments.repeats)
    sample_cost(max(20, arguments.repeats))
    if not arguments.skip_training:
        system_metrics_cost(arguments.pairs, arguments.epochs, arguments.seconds)
    return 0


if __name__ == "__main__":
    sys.exit(main())
