"""Benchmark every way to run the chapter on this machine, side by side in one invocation.

Each repetition runs, one after the other in child processes and in the same order, for the
same configuration, data and seed:

- the chapter's plain Keras code as written (benchmarks/chapter_plain.py, TensorFlow backend);
- the same code with ``KERAS_BACKEND=jax`` (one environment variable);
- ``fmtrain train`` on TensorFlow, and ``fmtrain train --backend jax``;
- the floor: the same network trained by plain numpy SGD (benchmarks/numpy_floor.py).

It records seconds per epoch (median of the epochs after the first), fit and wall time, the
time outside fit, and peak resident memory (from wait4), and prints medians and the ratios the
targets are about as Markdown. Nothing here is asserted: timings on a shared machine are noisy.

With ``--sweep``, it also times the whole chapter (8 configurations) three ways: the plain code
one configuration after another, ``fmtrain sweep --workers 1`` and ``fmtrain sweep --workers 2``;
with ``--throughput``, 8 configurations x 3 seeds with one worker and with two
(``--throughput-workers``).

    python benchmarks/bench.py [--config early-stopping] [--repeats 3] [--limit 0] [--sweep]
                               [--sweep-repeats 1] [--throughput] [--only-sweeps]
    python benchmarks/bench.py --chapter [--seeds 5] [--workers N] [--chapter-backend jax]
                               [--ray-address HOST:PORT] [--plain-seeds K] [--limit 0]
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
sys.path.insert(0, str(HERE))
import chapter_bench  # noqa: E402 - a sibling script, importable once its folder is on the path

WAYS = ("chapter code, TensorFlow", "chapter code, JAX", "fmtrain, TensorFlow", "fmtrain, JAX",
        "numpy SGD floor")


def timed(command: list[str], env: dict) -> tuple[str, float, float]:
    """Run ``command``; return its stdout, wall seconds and peak resident memory in MiB."""
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        start = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=err, env=env, text=True)
        _, status, usage = os.wait4(process.pid, 0)  # this child's own peak memory
        wall = time.perf_counter() - start
        out.seek(0)
        err.seek(0)
        if os.waitstatus_to_exitcode(status) != 0:
            sys.exit(f"bench: {' '.join(command[:4])} failed:\n{err.read()[-2000:]}")
        return out.read(), wall, usage.ru_maxrss / 1024


def run_plain(backend: str, args, env) -> dict:
    out, wall, rss = timed([sys.executable, str(HERE / "chapter_plain.py"), "--configs", args.config,
                            "--limit", str(args.limit)], dict(env, KERAS_BACKEND=backend))
    result = [json.loads(line) for line in out.splitlines() if line.startswith("{")][-1]
    return {"wall": wall, "fit": result["fit_seconds"], "rss": rss,
            "seconds_per_epoch": result["seconds_per_epoch"], "epochs": result["epochs_run"],
            "val_loss": result["val_loss"]}


def run_fmtrain(backend: str, args, env) -> dict:
    from mlflow.tracking import MlflowClient

    out, wall, rss = timed(["fmtrain", "train", "--config", args.config, "--limit", str(args.limit),
                            "--backend", backend, "--quiet"], env)
    run_id = re.search(r"^run (\w+) ", out, re.MULTILINE).group(1)
    metrics = MlflowClient(env["MLFLOW_TRACKING_URI"]).get_run(run_id).data.metrics
    return {"wall": wall, "fit": metrics["fit_seconds"], "rss": rss,
            "seconds_per_epoch": metrics["seconds_per_epoch"], "epochs": int(metrics["epochs_run"]),
            "val_loss": metrics["final_val_loss"]}


def run_floor(args, env) -> dict:
    out, wall, rss = timed([sys.executable, str(HERE / "numpy_floor.py")], env)
    result = json.loads(out.splitlines()[-1])
    return {"wall": wall, "fit": None, "rss": rss, "seconds_per_epoch": result["seconds_per_epoch"],
            "epochs": 4, "val_loss": None}


def help_seconds(env, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(["fmtrain", "--help"], stdout=subprocess.DEVNULL, env=env, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def sweep(args, env) -> None:
    """The whole chapter (8 configurations) three ways, ``--sweep-repeats`` times, interleaved: the
    plain code one configuration after another, ``fmtrain sweep --workers 1`` (sequential, in one
    process) and ``fmtrain sweep --workers 2`` (two Ray workers of one thread each)."""
    ways = {
        "chapter code, one after another": [sys.executable, str(HERE / "chapter_plain.py"), "--configs", "all",
                                            "--limit", str(args.limit)],
        "fmtrain sweep --workers 1": ["fmtrain", "sweep", "--limit", str(args.limit), "--backend", args.backend,
                                      "--quiet", "--workers", "1"],
        "fmtrain sweep --workers 2": ["fmtrain", "sweep", "--limit", str(args.limit), "--backend", args.backend,
                                      "--quiet", "--workers", "2"],
    }
    walls: dict[str, list[float]] = {way: [] for way in ways}
    for repeat in range(args.sweep_repeats):
        for way, command in ways.items():
            walls[way].append(timed(command, env)[1])
            print(f"sweep repeat {repeat + 1}, {way}: {walls[way][-1]:.0f} s", file=sys.stderr, flush=True)
    plain = statistics.median(walls["chapter code, one after another"])
    print(f"\n| whole chapter, 8 configurations ({args.backend}, medians of {args.sweep_repeats}) | "
          "wall time (s) | vs the chapter's code |")
    print("|---|---|---|")
    for way, times in walls.items():
        wall = statistics.median(times)
        print(f"| {way} | {wall:.0f} | {wall / plain:.2f}x |")


def throughput(args, env) -> None:
    """8 configurations x 3 seeds (24 runs) with ``fmtrain sweep --seeds 3``, one worker and two:
    runs per hour."""
    print(f"\n| 8 configurations x 3 seeds ({args.backend}) | wall time (s) | runs per hour |")
    print("|---|---|---|")
    for workers in args.throughput_workers.split(","):
        wall = timed(["fmtrain", "sweep", "--seeds", "3", "--limit", str(args.limit), "--backend",
                      args.backend, "--quiet", "--workers", workers], env)[1]
        print(f"| fmtrain sweep --seeds 3 --workers {workers} | {wall:.0f} | {24 * 3600 / wall:.0f} |",
              flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="early-stopping")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--limit", type=int, default=0)
    parser.add_argument("--sweep", action="store_true",
                        help="also time the whole chapter: plain code, fmtrain sweep --workers 1 and 2")
    parser.add_argument("--sweep-repeats", type=int, default=1)
    parser.add_argument("--throughput", action="store_true",
                        help="also time 8 configurations x 3 seeds with one worker and two")
    parser.add_argument("--throughput-workers", default="1,2",
                        help="the --workers values the throughput is measured with")
    parser.add_argument("--backend", default="tensorflow", help="backend of the fmtrain sweeps")
    parser.add_argument("--chapter", action="store_true",
                        help="time one `fmtrain sweep --seeds N` (all 8 configurations) and show where the "
                             "time went; nothing else unless asked")
    parser.add_argument("--seeds", type=int, default=5, help="seeds of --chapter")
    parser.add_argument("--chapter-backend", default=None, help="backend of --chapter (default: fmtrain's)")
    parser.add_argument("--workers", type=int, default=None, help="--workers of --chapter (default: fmtrain's)")
    parser.add_argument("--ray-address", default=None, help="--ray_address of --chapter")
    parser.add_argument("--store", default=None,
                        help="tracking URI to keep the runs in (default: a temporary sqlite store)")
    parser.add_argument("--plain-seeds", type=int, default=0,
                        help="with --chapter, also the chapter's code, 8 configurations x this many seeds")
    parser.add_argument("--only-sweeps", action="store_true",
                        help="skip the per-configuration comparison (with --sweep or --throughput)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fmtrain-bench-") as store:
        env = dict(os.environ, MLFLOW_TRACKING_URI=args.store or f"sqlite:///{store}/mlflow.db")
        for name in ("MLFLOW_RUN_ID", "KERAS_BACKEND"):
            env.pop(name, None)
        # Create the store's tables once, as a user's existing store has them.
        subprocess.run(["fmtrain", "reap"], env=env, check=True, capture_output=True)
        if args.chapter:
            chapter_bench.chapter(args, env)
            return
        results: dict[str, list[dict]] = {way: [] for way in WAYS}
        for repeat in range(0 if args.only_sweeps else args.repeats):
            for way, run in zip(WAYS, (lambda: run_plain("tensorflow", args, env),
                                       lambda: run_plain("jax", args, env),
                                       lambda: run_fmtrain("tensorflow", args, env),
                                       lambda: run_fmtrain("jax", args, env),
                                       lambda: run_floor(args, env)), strict=True):
                results[way].append(run())
                print(f"repeat {repeat + 1}, {way}: {results[way][-1]}", file=sys.stderr, flush=True)
        if not args.only_sweeps:
            report(args, results, help_seconds(env))
        if args.sweep:
            sweep(args, env)
        if args.throughput:
            throughput(args, env)


def _median(rows: list[dict], key: str):
    values = [row[key] for row in rows if row[key] is not None]
    return statistics.median(values) if values else None


def report(args, results: dict[str, list[dict]], help_time: float) -> None:
    med = {way: {key: _median(rows, key) for key in rows[0]} for way, rows in results.items()}
    for values in med.values():
        values["outside"] = values["wall"] - values["fit"] if values["fit"] is not None else None
    print(f"\n{args.config}, limit {args.limit or 'none (48,000 images)'}, medians of {args.repeats} "
          f"interleaved repetitions; epochs run: " +
          ", ".join(f"{way} {[r['epochs'] for r in rows]}" for way, rows in results.items()) + "\n")
    print("| way to run it | s/epoch | fit (s) | whole run (s) | outside fit (s) | peak RSS (MiB) | final val_loss |")
    print("|---|---|---|---|---|---|---|")

    def cell(value, digits=2):
        return "-" if value is None else f"{value:.{digits}f}"

    for way, values in med.items():
        print(f"| {way} | {cell(values['seconds_per_epoch'])} | {cell(values['fit'], 1)} | "
              f"{cell(values['wall'], 1)} | {cell(values['outside'], 1)} | {values['rss']:.0f} | "
              f"{cell(values['val_loss'], 4)} |")
    fastest = min(("fmtrain, TensorFlow", "fmtrain, JAX"), key=lambda way: med[way]["seconds_per_epoch"])
    plain, peer, floor = med["chapter code, TensorFlow"], med["chapter code, JAX"], med["numpy SGD floor"]
    mine = med[fastest]
    print(f"\nfastest fmtrain backend: {fastest}")
    print("\n| ratio | value | target |")
    print("|---|---|---|")
    print(f"| s/epoch, fastest fmtrain / chapter code on JAX | "
          f"{mine['seconds_per_epoch'] / peer['seconds_per_epoch']:.2f} | at most 0.8 |")
    print(f"| s/epoch, fastest fmtrain / numpy floor | "
          f"{mine['seconds_per_epoch'] / floor['seconds_per_epoch']:.2f} | at most 2 |")
    print(f"| whole run, fastest fmtrain / chapter code | {mine['wall'] / plain['wall']:.2f} | at most 0.5 |")
    print(f"| outside fit, fastest fmtrain / chapter code | {mine['outside'] / plain['outside']:.2f} | at most 1 |")
    for way in ("fmtrain, TensorFlow", "fmtrain, JAX"):
        print(f"| peak RSS, {way} (MiB) | {med[way]['rss']:.0f} | at most 1024 |")
    print(f"| fmtrain, TensorFlow s/epoch / chapter code's | "
          f"{med['fmtrain, TensorFlow']['seconds_per_epoch'] / plain['seconds_per_epoch']:.2f} | |")
    print(f"| `fmtrain --help` (s) | {help_time:.2f} | |")


if __name__ == "__main__":
    main()
