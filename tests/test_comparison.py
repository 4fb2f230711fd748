from fmtrain.analysis import comparison
from fmtrain.tracking.records import Cause, Ending, Labels, RunRecord


def record(name, status="FINISHED", final=0.4, val_loss=(0.5, 0.4, 0.45), error=""):
    metrics = {} if status != "FINISHED" else {
        "final_val_loss": final, "final_val_accuracy": 0.8, "reload_whole_val_accuracy": 0.8,
        "epochs_run": float(len(val_loss)), "stopped_epoch": float(len(val_loss) - 1),
        "best_epoch": float(list(val_loss).index(min(val_loss)))}
    settings = {"optimizer": "adam", "dropout_rate": "0.3", "epochs": "3"}
    return RunRecord(run_id=f"id-{name}", name=name, experiment_id="1", status=status, started=0.0, seconds=12.5,
                     last_sign_of_life=0.0, labels=Labels(config=name), parent_id=None,
                     ending=Ending(Cause.ERROR, error) if error else None, settings=settings, params=settings,
                     metrics=metrics, curves={"loss": [0.6, 0.5, 0.4], "val_loss": list(val_loss)})


def test_rows_best_and_markdown():
    records = [record("a", final=0.45), record("b", final=0.41, val_loss=(0.5, 0.41, 0.42)),
               record("c", status="FAILED", error="ValueError: bad", val_loss=())]
    rows = comparison.summary_rows(records)
    assert [r.config for r in rows] == ["a", "b", "c"]
    assert rows[1].best_val_loss == 0.41 and rows[1].best_epoch == 1 and rows[1].stopped_epoch == 2
    assert rows[2].status == "FAILED: ValueError: bad" and rows[2].final_val_loss is None
    assert comparison.best_row(rows).config == "b"
    markdown = comparison.to_markdown(rows).splitlines()
    assert markdown[0].startswith("| config | seed | status | optimizer |") and len(markdown) == 5
    assert "| b | - | FINISHED | adam | 0.3 | 3 | 3 | 2 | 1 | 0.4100 | 0.4100 | 0.8000 | 0.8000 | 12.5 |" in markdown
    csv_lines = comparison.to_csv(rows).splitlines()
    assert csv_lines[0].split(",") == list(comparison.COLUMNS) and len(csv_lines) == 4


def test_no_finished_run_has_no_best():
    assert comparison.best_row(comparison.summary_rows([record("x", status="FAILED")])) is None


def test_figure_has_a_line_per_run_on_shared_axes():
    figure = comparison.figure([record("a"), record("b")])
    val_axes, train_axes = figure.axes
    assert [line.get_label() for line in train_axes.get_lines()] == ["a", "b"]
    assert val_axes.get_xlabel() == "epoch" and "validation loss" in val_axes.get_title()


def test_a_diverged_run_is_never_the_best():
    rows = comparison.summary_rows([record("nan", final=float("nan")), record("ok", final=2.0)])
    assert comparison.best_row(rows).config == "ok"
