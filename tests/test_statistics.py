"""Statistics over seeds on numbers the tests make up: intervals, paired comparisons, the report."""

import re
import subprocess

import numpy as np
import pytest

from fmtrain.analysis import intervals
from fmtrain.tracking.records import Labels, RunRecord
from fmtrain.workflows import report


def test_summary_is_the_mean_with_a_bootstrap_interval_around_it():
    values = [0.30, 0.31, 0.32, 0.29, 0.305]
    summary = intervals.summarize(values)
    assert summary.n == 5 and summary.mean == pytest.approx(np.mean(values))
    assert summary.std == pytest.approx(np.std(values, ddof=1))
    assert min(values) <= summary.low < summary.mean < summary.high <= max(values)
    assert intervals.summarize(values) == summary  # reproducible
    one = intervals.summarize([0.4])
    assert (one.n, one.low, one.high) == (1, 0.4, 0.4) and np.isnan(one.std)
    assert intervals.summarize([0.5, 0.5, 0.5]).low == 0.5
    with pytest.raises(ValueError, match="no finite values"):
        intervals.summarize([float("nan"), None])


def test_a_known_real_difference_is_called_real():
    rng = np.random.default_rng(0)
    seeds = range(42, 47)
    rmsprop = {s: 0.50 + rng.normal(0, 0.01) for s in seeds}
    adam = {s: rmsprop[s] - 0.11 + rng.normal(0, 0.005) for s in seeds}
    difference = intervals.paired(rmsprop, adam)
    assert difference.real and difference.high < 0 and difference.mean == pytest.approx(-0.11, abs=0.01)
    text = intervals.verdict(difference, "final val_loss", "rmsprop-val", "adam")
    assert text.startswith("adam's final val_loss is lower than rmsprop-val's by 0.1")
    amount, low, high = map(float, re.search(r"by ([\d.]+) \[([\d.]+), ([\d.]+)\]", text).groups())
    assert 0 < low <= amount <= high  # the amount and its interval have the same sign
    assert text.endswith(": a real difference (5 seeds)")


def test_no_difference_is_said_plainly():
    rng = np.random.default_rng(1)
    a = {s: 0.32 + rng.normal(0, 0.01) for s in range(5)}
    b = {s: 0.32 + rng.normal(0, 0.01) for s in range(5)}
    difference = intervals.paired(a, b)
    assert not difference.real and difference.low < 0 < difference.high
    assert intervals.verdict(difference, "final val_loss", "dropout", "early-stopping").endswith(
        "no difference detectable with 5 seeds")
    assert "train with --seeds 2 or more" in intervals.verdict(intervals.paired({1: 0.3}, {1: 0.2}), "x", "a", "b")


def test_paired_uses_only_the_seeds_both_have():
    difference = intervals.paired({1: 1.0, 2: 2.0, 3: 9.0}, {1: 2.0, 2: 3.0, 4: 0.0})
    assert difference.n == 2 and difference.mean == 1.0
    with pytest.raises(ValueError, match="share no seed"):
        intervals.paired({1: 1.0}, {2: 1.0})


def _record(config, seed, final, loss_last, best, epochs):
    return RunRecord(run_id=f"{config}-{seed}", name=f"{config}/seed-{seed}", experiment_id="1", status="FINISHED",
                     started=0.0, seconds=1.0, last_sign_of_life=0.0, labels=Labels(config=config, seed=seed),
                     parent_id="parent", ending=None, settings={"seed": str(seed)}, params={"seed": str(seed)},
                     metrics={"final_val_loss": final, "final_val_accuracy": 1 - final,
                              "best_epoch": best, "stopped_epoch": epochs - 1, "epochs_run": epochs},
                     curves={"loss": [0.6, loss_last], "val_loss": [0.5, final]})


def test_the_report_answers_the_chapters_questions():
    seeds = range(42, 47)
    by_config = {
        "rmsprop-val": {s: _record("rmsprop-val", s, 0.50 + 0.002 * s % 3, 0.20, 2, 20) for s in seeds},
        "adam": {s: _record("adam", s, 0.39 + 0.001 * (s % 2), 0.22, 7, 20) for s in seeds},
        "dropout": {s: _record("dropout", s, 0.326 + 0.001 * (s % 3), 0.30, 14, 20) for s in seeds},
        "early-stopping": {s: _record("early-stopping", s, 0.326 + 0.001 * ((s + 1) % 3), 0.31, 9, 12)
                           for s in seeds},
    }
    chapter = report.compute("parent", by_config)
    assert chapter.seeds == list(seeds)
    questions = {a.question: a for a in chapter.answers}
    assert questions["RMSprop vs Adam"].differences[0].real  # adam's val_loss is lower
    assert "adam's final val_loss is lower than rmsprop-val's" in questions["RMSprop vs Adam"].verdicts[0]
    gap = questions["no Dropout vs Dropout(0.3)"].differences[0]
    assert gap.real and gap.mean == pytest.approx((0.326 + 0.001 - 0.30) - (0.39 + 0.0004 - 0.22), abs=0.01)
    stop = questions["20 epochs vs early stopping"]
    assert not stop.differences[0].real and stop.differences[1].mean == -8  # 12 epochs instead of 20
    markdown = chapter.markdown()
    assert "| early stopping: val loss | 0.322-0.331 | 0.32" in markdown and "| yes |" in markdown
    assert "| save-restore" not in markdown and "not run" in markdown  # steps not run are said so
    assert "![validation loss by epoch" in markdown
    figures = report.figures(chapter)
    assert set(figures) == {report.BANDS_FIGURE, report.INTERVALS_FIGURE}
    assert len(figures[report.BANDS_FIGURE].axes[0].get_lines()) == 4


def test_a_sweep_with_three_seeds_nests_its_runs_and_reports_from_the_store(store, tmp_path, real_data_dir, capsys):
    from mlflow.tracking import MlflowClient

    from fmtrain.cli.app import main

    from conftest import all_runs

    # In a process of its own: several seeds choose JAX, and Keras keeps the first backend a
    # process imports (the other tests of this worker process train in it on TensorFlow).
    done = subprocess.run(["fmtrain", "sweep", "--configs", "rmsprop-val,adam", "--seeds", "3", "--limit", "500",
                           "--epochs", "2", "--quiet", "--workers", "1", "--data_dir", str(real_data_dir)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "[1/6] rmsprop-val/seed-42 ... val_loss" in out and "[6/6] adam/seed-44 ... val_loss" in out
    assert "RMSprop vs Adam: " in out
    runs = all_runs()
    parent = next(r for r in runs if "mlflow.parentRunId" not in r.data.tags)
    children = sorted((r for r in runs if r is not parent), key=lambda r: r.info.start_time)
    assert [c.info.run_name for c in children] == [f"{c}/seed-{s}" for c in ("rmsprop-val", "adam")
                                                   for s in (42, 43, 44)]
    assert all(c.data.tags["mlflow.parentRunId"] == parent.info.run_id for c in children)
    assert [(c.data.tags["fmtrain.config"], c.data.tags["fmtrain.seed"], c.data.params["seed"]) for c in children][:2] \
        == [("rmsprop-val", "42", "42"), ("rmsprop-val", "43", "43")]
    assert parent.data.params["seeds"] == "3" and parent.data.tags["fmtrain.sweep.seeds"] == "42,43,44"
    assert parent.data.params["backend"] == "jax" and parent.data.params["share_epochs"] == "true"
    client = MlflowClient()
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id)}
    assert {"chapter-report.md", report.BANDS_FIGURE, report.INTERVALS_FIGURE, "sweep-summary.csv"} <= artifacts
    logged = open(client.download_artifacts(parent.info.run_id, "chapter-report.md", str(tmp_path))).read()
    assert parent.data.tags["mlflow.note.content"] == logged  # the description on the run's page
    assert "# The chapter with 3 seed(s): 42, 43, 44" in logged and "**RMSprop vs Adam**" in logged

    # `fmtrain report` rebuilds the same numbers from the store alone.
    assert main(["report", parent.info.run_id, "--no-log", "--output", str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "chapter-report.md").read_text() == logged
    values = [c.data.metrics["final_val_loss"] for c in children if c.data.tags["fmtrain.config"] == "adam"]
    assert f"| adam | 3 | {np.mean(values):.4f} ± {np.std(values, ddof=1):.4f}" in logged


def test_train_with_seeds_makes_a_parent_and_bad_seeds_are_refused(store, real_data_dir, capsys):
    from fmtrain.cli.app import main

    from conftest import all_runs

    # One child after another in this process, on its backend (Keras keeps the first one a process
    # imports): the parent and its children are what this checks, not where they train.
    assert main(["train", "--config", "adam", "--seeds", "7,9", "--limit", "500", "--epochs", "1", "--quiet",
                 "--workers", "1", "--backend", "tensorflow", "--data_dir", str(real_data_dir)]) == 0
    runs = all_runs()
    assert sorted(r.info.run_name for r in runs) == ["adam seeds", "adam/seed-7", "adam/seed-9"]
    for bad, message in (("0", "seeds must be a count (3) or a list"), ("4,4", "must not repeat a seed"),
                         ("x", "seeds must be a count")):
        assert main(["train", "--seeds", bad, "--data_dir", str(real_data_dir)]) == 2
        assert message in capsys.readouterr().err
    assert len(all_runs()) == 3
