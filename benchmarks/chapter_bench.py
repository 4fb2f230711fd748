"""The chapter with several seeds, timed: one ``fmtrain sweep --seeds N`` invocation, and where its
wall time went, read back from its own store.

It prints the wall time and runs per minute; each run's time in fit() (``fit_seconds``) against
everything else it did (from its MLflow start to its end: building, the reload checks, figures,
logging the model, store writes); and the workers' idle time: worker-seconds of the wall time in
which no run of theirs was open (start-up before the first run, gaps between runs, the tail in
which the report is built), with ``--plain-seeds K``, also the chapter's own code run the same
way (``chapter_plain.py``, every configuration for each of K seeds, ``--workers`` processes at
once). Called by ``bench.py --chapter``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent


def sweep_command(args) -> list[str]:
    command = ["fmtrain", "sweep", "--seeds", str(args.seeds), "--limit", str(args.limit), "--quiet"]
    if args.chapter_backend:
        command += ["--backend", args.chapter_backend]
    if args.workers:
        command += ["--workers", str(args.workers)]
    if args.ray_address:
        command += ["--ray_address", args.ray_address]
    return command


def runs_of_last_sweep(uri: str):
    """The parent and its children (oldest parent last made), from the store."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(uri)
    experiments = [e.experiment_id for e in client.search_experiments()]
    runs = client.search_runs(experiments, max_results=5000)
    parents = sorted((r for r in runs if "fmtrain.sweep.configs" in r.data.tags), key=lambda r: r.info.start_time)
    parent = parents[-1]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    return parent, sorted(children, key=lambda r: r.info.start_time)


def chapter(args, env) -> None:
    """Time one ``fmtrain sweep --seeds N`` and print where the time went."""
    command = sweep_command(args)
    print(f"bench: {' '.join(command)}", file=sys.stderr, flush=True)
    start_ms = time.time() * 1000
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"bench: the sweep failed:\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}")
    parent, children = runs_of_last_sweep(env["MLFLOW_TRACKING_URI"])
    workers = int(parent.data.params.get("workers", "1"))
    durations = [(c.info.end_time - c.info.start_time) / 1000 for c in children]
    fits = [c.data.metrics.get("fit_seconds", 0.0) for c in children]
    first = min(c.info.start_time for c in children)
    last = max(c.info.end_time for c in children)
    busy = sum(durations)
    startup = (first - start_ms) / 1000
    tail = wall - (last - start_ms) / 1000
    idle = workers * wall - busy
    backend = parent.data.params.get("backend", "tensorflow")
    print(f"\n`{' '.join(command)}`: {len(children)} runs, backend {backend}, {workers} workers\n")
    print("| measure | value |\n|---|---|")
    print(f"| wall time, report included | {wall:.0f} s |")
    print(f"| runs per minute | {len(children) * 60 / wall:.1f} |")
    fitted = [c for c in children if "fmtrain.epochs_from" not in c.data.tags]
    print(f"| fits (runs whose epochs fit() computed; the others replay a leader's) | {len(fitted)} of "
          f"{len(children)}, {sum(int(c.data.metrics.get('epochs_run', 0)) for c in fitted)} epochs |")
    print(f"| time in fit(), all runs | {sum(fits):.0f} s ({sum(fits) / busy:.0%} of the runs' time) |")
    print(f"| time outside fit(), all runs | {busy - sum(fits):.0f} s, {(busy - sum(fits)) / len(children):.1f} s per run |")
    print(f"| workers' idle time | {idle:.0f} worker-s of {workers * wall:.0f} ({idle / (workers * wall):.0%}): "
          f"start-up to the first run {startup:.0f} s, after the last run (report) {tail:.0f} s |")
    print("\n| run | whole run (s) | fit (s) | outside fit (s) |\n|---|---|---|---|")
    for child, duration, fit in zip(children, durations, fits, strict=True):
        print(f"| {child.info.run_name} | {duration:.1f} | {fit:.1f} | {duration - fit:.1f} |")
    if args.plain_seeds:
        plain(args, env)


def plain(args, env) -> None:
    """The chapter's code: every configuration for each of ``--plain-seeds`` seeds, each seed one
    process running the configurations one after another, ``--workers`` processes at once."""
    seeds = [42 + i for i in range(args.plain_seeds)]
    threads = max(1, (os.cpu_count() or 1) // max(1, args.workers or 2))
    plain_env = dict(env, TF_NUM_INTRAOP_THREADS=str(threads), TF_NUM_INTEROP_THREADS=str(threads),
                     OMP_NUM_THREADS=str(threads))
    start = time.perf_counter()
    waiting, running = list(seeds), []
    while waiting or running:
        while waiting and len(running) < (args.workers or 2):
            seed = waiting.pop(0)
            running.append(subprocess.Popen(
                [sys.executable, str(HERE / "chapter_plain.py"), "--configs", "all", "--limit", str(args.limit),
                 "--seed", str(seed)], env=plain_env, stdout=subprocess.DEVNULL))
        running[0].wait()
        running = [p for p in running if p.poll() is None]
    wall = time.perf_counter() - start
    runs = 8 * len(seeds)
    print(f"\nthe chapter's code (TensorFlow, Keras's order), 8 configurations x {len(seeds)} seeds, "
          f"{args.workers or 2} processes at once: {wall:.0f} s, {runs * 60 / wall:.1f} runs per minute")
