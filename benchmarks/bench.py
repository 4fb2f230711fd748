"""Benchmark fmtrain against the chapter's plain Keras code, interleaved, on this machine.

Each repetition runs, one after the other in child processes, the plain chapter code
(benchmarks/chapter_plain.py) and ``fmtrain train`` for the same configuration, data and seed,
and records seconds per epoch (median of the epochs after the first), wall and fit time, the
time spent outside fit, and peak resident memory (from wait4). It prints the medians and ratios
as a Markdown table. Nothing here is asserted: timings on a shared machine are noisy.

    python benchmarks/bench.py [--config early-stopping] [--repeats 3] [--limit 0] [--sweep]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def timed(command: list[str], env: dict) -> tuple[str, float, float]:
    """Run ``command``; return its stdout, wall seconds and peak resident memory in MiB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        process.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if process.returncode != 0:
            sys.exit(f"bench: {' '.join(command[:3])} failed:\n{err.read()[-2000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024


def run_plain(config: str, args, env) -> dict:
    out, wall, rss = timed([sys.executable, str(HERE / "chapter_plain.py"), "--configs", config,
                            "--limit", str(args.limit)], env)
    results = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    fit = sum(r["fit_seconds"] for r in results)
    return {"wall": wall, "fit": fit, "rss": rss, "seconds_per_epoch": results[-1]["seconds_per_epoch"],
            "epochs": results[-1]["epochs_run"], "val_loss": results[-1]["val_loss"]}


def run_fmtrain(config: str, args, env) -> dict:
    from mlflow.tracking import MlflowClient

    out, wall, rss = timed(["fmtrain", "train", "--config", config, "--limit", str(args.limit), "--quiet"], env)
    run_id = re.search(r"^run (\w+) ", out, re.MULTILINE).group(1)
    metrics = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id).data.metrics
    return {"wall": wall, "fit": metrics["fit_seconds"], "rss": rss,
            "seconds_per_epoch": metrics["seconds_per_epoch"], "epochs": int(metrics["epochs_run"]),
            "val_loss": metrics["final_val_loss"]}


def help_seconds(env, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(["fmtrain", "--help"], stdout=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sweep(args, env) -> None:
    _, plain_wall, plain_rss = timed([sys.executable, str(HERE / "chapter_plain.py"), "--configs", "all",
                                      "--limit", str(args.limit)], env)
    _, fm_wall, fm_rss = timed(["fmtrain", "sweep", "--limit", str(args.limit), "--quiet"], env)
    print("\n| whole chapter (8 configurations) | plain chapter code | fmtrain sweep | ratio |")
    print("|---|---|---|---|")
    print(f"| wall time (s) | {plain_wall:.0f} | {fm_wall:.0f} | {plain_wall / fm_wall:.2f}x faster |")
    print(f"| peak RSS (MiB) | {plain_rss:.0f} | {fm_rss:.0f} | {fm_rss / plain_rss:.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="early-stopping")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--sweep", action="store_true", help="also time the whole chapter once each way")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fmtrain-bench-") as store:
        env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{store}/mlflow.db")
        env.pop("MLFLOW_RUN_ID", None)
        # Create the store's tables once, as a user's existing store has them.
        subprocess.run([sys.executable, "-c", "import mlflow; mlflow.set_experiment('fashion-mnist')"],
                       env=env, check=True, capture_output=True)
        plain, fast = [], []
        for repeat in range(args.repeats):
            plain.append(run_plain(args.config, args, env))
            fast.append(run_fmtrain(args.config, args, env))
            print(f"repeat {repeat + 1}: plain {plain[-1]}\n          fmtrain {fast[-1]}", file=sys.stderr)
        report(args, plain, fast, help_seconds(env))
        if args.sweep:
            sweep(args, env)


def report(args, plain: list[dict], fast: list[dict], help_time: float) -> None:
    def median(rows, key):
        return statistics.median(row[key] for row in rows)

    p_epoch, f_epoch = median(plain, "seconds_per_epoch"), median(fast, "seconds_per_epoch")
    p_out = statistics.median(r["wall"] - r["fit"] for r in plain)
    f_out = statistics.median(r["wall"] - r["fit"] for r in fast)
    overhead = statistics.median((f["wall"] - f["fit"]) - (p["wall"] - p["fit"]) for p, f in zip(plain, fast, strict=True))
    f_fit = median(fast, "fit")
    print(f"\n{args.config}, limit {args.limit or 'none (48,000 images)'}, medians of {args.repeats} "
          f"interleaved repetitions; epochs run: plain {[r['epochs'] for r in plain]}, "
          f"fmtrain {[r['epochs'] for r in fast]}\n")
    print("| measure | plain chapter code | fmtrain train | ratio |")
    print("|---|---|---|---|")
    print(f"| seconds per epoch | {p_epoch:.2f} | {f_epoch:.2f} | {p_epoch / f_epoch:.2f}x faster |")
    print(f"| fit time (s) | {median(plain, 'fit'):.1f} | {f_fit:.1f} | {median(plain, 'fit') / f_fit:.2f}x faster |")
    print(f"| whole-run wall time (s) | {median(plain, 'wall'):.1f} | {median(fast, 'wall'):.1f} | "
          f"{median(plain, 'wall') / median(fast, 'wall'):.2f}x faster |")
    print(f"| wall minus fit (s) | {p_out:.1f} | {f_out:.1f} | |")
    print(f"| tracking overhead (s): fmtrain's wall minus fit, less the plain code's | - | {overhead:.1f} | "
          f"{100 * overhead / f_fit:.0f}% of fmtrain's fit |")
    print(f"| peak resident memory (MiB) | {median(plain, 'rss'):.0f} | {median(fast, 'rss'):.0f} | "
          f"{median(fast, 'rss') / median(plain, 'rss'):.2f} |")
    print(f"| final val_loss | {median(plain, 'val_loss'):.4f} | {median(fast, 'val_loss'):.4f} | |")
    print(f"| `fmtrain --help` (s) | - | {help_time:.2f} | |")


if __name__ == "__main__":
    main()
