"""The command line: fast help, and bad input refused with one line before any run exists."""

import subprocess
import sys

import pytest

from fmtrain.cli.app import main
from fmtrain.learning import configs

from conftest import all_runs

HEAVY = "print(sorted(m for m in ('tensorflow', 'keras', 'mlflow', 'jax', 'ray') if m in sys.modules))"


def _in_fresh_process(argv):
    code = f"import sys\nfrom fmtrain.cli.app import main\nmain({argv!r})\n{HEAVY}"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)


def test_help_lists_types_choices_and_defaults_without_heavy_imports():
    out = _in_fresh_process(["train", "--help"]).stdout
    assert "--dropout_rate, --dropout-rate NUMBER" in out
    assert "--optimizer [rmsprop|adam|sgd]" in out and "--patience INTEGER|NONE" in out
    assert "[default: early-stopping]" in out and "[default: 0.3, or the" in out
    assert out.strip().endswith("[]")


def test_top_level_help_and_a_bad_option_are_served_without_heavy_imports():
    out = _in_fresh_process(["--help"]).stdout
    assert "train     Train one configuration as one MLflow run" in out and out.strip().endswith("[]")
    done = _in_fresh_process(["train", "--epoch", "5"])
    assert done.stderr.strip() == ("fmtrain: error: No such option '--epoch'. Did you mean '--epochs'? "
                                   "(see `fmtrain train --help`)")
    assert done.stdout.strip().endswith("[]")


def test_cli_runner_parses_every_setting_by_its_one_name():
    from click.testing import CliRunner

    from fmtrain.cli import options

    seen = {}

    @options.setting_options
    def probe(**settings):
        seen.update(options.overrides_from(settings))

    import click

    command = click.command()(probe)
    result = CliRunner().invoke(command, ["--dropout-rate", "0.5", "--learning_rate", "none",
                                          "--validation", "false", "--epochs", "7"])
    assert result.exit_code == 0, result.output
    assert seen == {"dropout_rate": "0.5", "learning_rate": "none", "validation": "false", "epochs": "7"}
    result = CliRunner().invoke(command, ["--batch_size", "32.5"])
    assert result.exit_code == 2 and "batch_size must be a whole number, got '32.5'" in result.output


def test_configs_lists_every_configuration_with_its_chapter_step(capsys):
    assert main(["configs"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["configuration", "chapter", "step", "changes", "from", "the", "default"]
    names = [line.split()[0] for line in lines[1:9]]
    assert names == list(configs.CONFIGS)
    assert "loss curve from History" in lines[1] and lines[1].rstrip().endswith(
        "epochs=5, optimizer=rmsprop, dropout_rate=0.0, patience=none, validation=false, checkpoint=false")
    assert lines[8].startswith("early-stopping (default)") and lines[8].rstrip().endswith("nothing")


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
    (["train", "--config", "adamw"], "'adamw' is not one of 'rmsprop-5', 'rmsprop-20'"),
    (["train", "--dropout_rate", "1.5"], "dropout_rate must be in [0, 1), got 1.5"),
    (["train", "--epochs", "0"], "epochs must be at least 1, got 0"),
    (["train", "--optimizer", "adagrad"], "'adagrad' is not one of 'rmsprop', 'adam', 'sgd'"),
    (["train", "--learning_rate", "inf"], "learning_rate must be a positive finite number, got inf"),
    (["train", "--seed", "-1"], "seed must be in [0, 4294967295], got -1"),
    (["train", "--epochs", "ten"], "epochs must be a whole number, got 'ten'"),
    (["train", "--learning-rate", "fast"], "learning_rate must be a number, got 'fast'"),
    (["train", "--data_dir", "/nonexistent/fashion"], "/nonexistent/fashion: data directory not found"),
    (["train", "--data_dir", "{corrupt}"], "train-images-idx3-ubyte.gz: cannot be read"),
    (["train", "--epoch", "5"], "No such option '--epoch'"),
    (["sweep", "--configs", "adam,nope"], "unknown configuration nope; choose from: rmsprop-5"),
    (["sweep", "--epochs", "0"], "epochs must be at least 1, got 0"),
    (["sweep", "--limit", "5"], "limit must be 0 (all data) or at least 40"),
    (["sweep", "--epochs", "x"], "epochs must be a whole number, got 'x'"),
    (["sweep", "--workers", "0"], "Invalid value for '--workers': 0 is not in the range x>=1"),
    (["sweep", "--workers", "1", "--ray-address", "127.0.0.1:6379"], "needs --workers 2 or more"),
    (["sweep", "--ray_address", "127.0.0.1:6379"], "a Ray cluster needs an http(s):// tracking URI that "
                                                    "its nodes can reach, not sqlite:///"),
    (["train", "--seeds", "2", "--ray-address", "127.0.0.1:6379"], "a Ray cluster needs an http(s)://"),
    (["evaluate", "--model_uri", "models:/missing@champion"], "no registered model named 'missing'"),
    (["evaluate", "--model_uri", "s3://bucket/model"], "is not one of models:/NAME@ALIAS"),
    (["compare", "0123456789abcdef"], "run '0123456789abcdef' not found"),
    (["register", "0123456789abcdef", "--name", "fm"], "run '0123456789abcdef' not found"),
])
def test_bad_input_gets_one_line_and_no_run(argv, message, store, corrupt_dir, capsys):
    argv = [a.replace("{corrupt}", str(corrupt_dir)) for a in argv]
    assert main(argv) == 2
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
    from fmtrain.learning import training

    def broken(*args, **kwargs):
        raise RuntimeError("disk full while saving")

    monkeypatch.setattr(training, "save_and_check", broken)
    assert main(["train", "--data_dir", str(tiny_data_dir), "--epochs", "1", "--quiet"]) == 1
    assert "(early-stopping) failed: RuntimeError: disk full while saving" in capsys.readouterr().err
    (run,) = all_runs()
    assert run.info.status == "FAILED"
    assert run.data.tags["fmtrain.error"] == "RuntimeError: disk full while saving"
    assert main(["register", run.info.run_id, "--name", "fm"]) == 2  # it has no model
    assert f"run {run.info.run_id} has no logged model to register" in capsys.readouterr().err
