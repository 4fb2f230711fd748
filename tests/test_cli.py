"""The command line: fast help, and bad input refused with one line before any run exists."""

import subprocess
import sys

import pytest

from conftest import PROJECT, all_runs
from fmtrain.cli import main


def test_help_imports_neither_tensorflow_nor_mlflow():
    code = ("import sys\nfrom fmtrain.cli import main\ntry:\n    main(['train', '--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "--dropout_rate V, --dropout-rate V" in out and out.strip().endswith("[]")


def test_top_level_help_is_served_without_heavy_imports():
    code = ("import sys\nfrom fmtrain.cli import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\nprint(sorted(m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "train     train one configuration as one MLflow run" in out and out.strip().endswith("[]")


def test_configs_lists_every_configuration(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines[1:17:2]]
    assert names == ["rmsprop-5", "rmsprop-20", "rmsprop-val", "adam", "dropout", "save-restore",
                     "checkpoint", "early-stopping"]
    assert lines[15].endswith("(default)") and lines[16].strip() == "nothing: it is the default"
    assert lines[2].strip() == ("epochs=5, optimizer=rmsprop, dropout_rate=0.0, patience=none, "
                                "validation=false, checkpoint=false")


def test_only_the_tracking_boundary_imports_mlflow():
    import ast

    offenders = []
    for path in (PROJECT / "fmtrain").rglob("*.py"):
        allowed = path.parent.name == "tracking" or path.name == "registry.py"
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            if any(n.split(".")[0] == "mlflow" for n in names) and not allowed:
                offenders.append(f"{path.name}:{node.lineno}")
    assert offenders == []


@pytest.fixture
def corrupt_dir(tmp_path, tiny_data_dir):
    directory = tmp_path / "corrupt"
    directory.mkdir()
    for path in tiny_data_dir.iterdir():
        (directory / path.name).write_bytes(path.read_bytes())
    target = directory / "train-images-idx3-ubyte.gz"
    target.write_bytes(target.read_bytes()[: len(target.read_bytes()) // 2])
    return directory


@pytest.mark.parametrize("argv, message", [
    (["train", "--config", "adamw"], "unknown configuration 'adamw'; choose one of: rmsprop-5"),
    (["train", "--dropout_rate", "1.5"], "dropout_rate must be in [0, 1), got 1.5"),
    (["train", "--epochs", "0"], "epochs must be at least 1, got 0"),
    (["train", "--optimizer", "adagrad"], "unknown optimizer 'adagrad'"),
    (["train", "--epochs", "ten"], "epochs must be a whole number, got 'ten'"),
    (["train", "--learning-rate", "fast"], "learning_rate must be a number, got 'fast'"),
    (["train", "--data_dir", "/nonexistent/fashion"], "/nonexistent/fashion: data directory not found"),
    (["train", "--data_dir", "{corrupt}"], "train-images-idx3-ubyte.gz: cannot be read"),
    (["train", "--epoch", "5"], "unrecognized arguments: --epoch 5"),
    (["sweep", "--configs", "adam,nope"], "unknown configuration nope; choose from: rmsprop-5"),
    (["sweep", "--epochs", "0"], "epochs must be at least 1, got 0"),
    (["sweep", "--limit", "5"], "limit must be 0 (all data) or at least 40"),
    (["sweep", "--epochs", "x"], "epochs must be a whole number, got 'x'"),
    (["evaluate", "--model_uri", "models:/missing@champion"], "no registered model named 'missing'"),
    (["evaluate", "--model_uri", "s3://bucket/model"], "is not one of models:/NAME@ALIAS"),
    (["compare", "0123456789abcdef"], "run '0123456789abcdef' not found"),
    (["register", "0123456789abcdef", "--name", "fm"], "run '0123456789abcdef' not found"),
])
def test_bad_input_gets_one_line_and_no_run(argv, message, store, corrupt_dir, capsys):
    argv = [a.replace("{corrupt}", str(corrupt_dir)) for a in argv]
    try:
        assert main(argv) == 2
    except SystemExit as exit_:  # argparse's own errors exit from inside the parser
        assert exit_.code == 2
    err = capsys.readouterr().err
    ours = [line for line in err.splitlines() if line.startswith("fmtrain:")]
    assert len(ours) == 1 and ours[0].startswith("fmtrain: error: ") and message in ours[0], err
    assert "Traceback" not in err
    import mlflow

    assert mlflow.search_runs(search_all_experiments=True, output_format="list") == []


def test_console_script_exits_non_zero_without_traceback(store):
    done = subprocess.run(["fmtrain", "train", "--patience", "-1"], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1] == \
        "fmtrain: error: patience must be 0 or more (or none), got -1"
    assert "Traceback" not in done.stderr


def test_failure_during_training_leaves_the_run_failed(store, tiny_data_dir, monkeypatch, capsys):
    from fmtrain import training

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while saving")

    monkeypatch.setattr(training, "save_and_check", broken)
    assert main(["train", "--data_dir", str(tiny_data_dir), "--epochs", "1", "--quiet"]) == 1
    assert "(early-stopping) failed: RuntimeError: disk full while saving" in capsys.readouterr().err
    (run,) = all_runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["fmtrain.error"] == "RuntimeError: disk full while saving"
    assert main(["register", run.info.run_id, "--name", "fm"]) == 2  # it has no model
    assert f"run {run.info.run_id} has no logged model 'model' to register" in capsys.readouterr().err
