"""Register with aliases, and evaluate on the test set through MLflow's classifier evaluator, in a
fresh process and under `mlflow run`."""

import os
import subprocess

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main
from fmtrain.learning import data

from conftest import PROJECT, all_runs, run_fmtrain


@pytest.fixture
def two_versions(store, real_data_dir, capsys):
    """Two tiny runs registered as fm v1 and v2; the alias champion moved from v1 to v2."""
    for config, epochs in (("adam", "1"), ("dropout", "2")):
        assert main(["train", "--config", config, "--limit", "600", "--epochs", epochs,
                     "--data_dir", str(real_data_dir), "--quiet"]) == 0
    first, second = sorted(all_runs(), key=lambda r: r.info.start_time)
    client = MlflowClient()
    assert main(["register", first.info.run_id, "--name", "fm", "--alias", "champion"]) == 0
    assert str(client.get_model_version_by_alias("fm", "champion").version) == "1"
    assert main(["register", second.info.run_id, "--name", "fm", "--alias", "champion"]) == 0
    assert "as fm version 2 with alias champion" in capsys.readouterr().out
    champion = client.get_model_version_by_alias("fm", "champion")
    assert str(champion.version) == "2" and champion.run_id == second.info.run_id
    return first, second


def evaluate_in_fresh_process(uri, store, data_dir, cwd):
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    done = run_fmtrain(["evaluate", "--model-uri", uri, "--data-dir", str(data_dir)], env=env, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_evaluate_by_alias_and_by_version(two_versions, store, real_data_dir, tmp_path, capsys):
    first, second = two_versions
    assert main(["evaluate", "--model_uri", "models:/fm@nope"]) == 2
    assert main(["evaluate", "--model_uri", "models:/fm/7"]) == 2
    out = evaluate_in_fresh_process("models:/fm@champion", store, real_data_dir, tmp_path)
    err = capsys.readouterr().err
    assert "registered model 'fm' has no alias 'nope'; aliases: champion (v2)" in err
    assert "registered model 'fm' has no version 7; latest is 2" in err
    assert "(fm version 2) on 10000 test images" in out
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # set by the in-process runs above; the name decides here
    done = subprocess.run(["mlflow", "run", str(PROJECT), "-e", "evaluate", "--env-manager", "local",
                           "--experiment-name", "fashion-mnist", "-P", "model_uri=models:/fm/1",
                           "-P", f"data_dir={real_data_dir}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluations = [r for r in all_runs() if "model_uri" in r.data.params]
    by_uri = {r.data.params["model_uri"]: r for r in evaluations}
    assert by_uri["models:/fm@champion"].data.params["model_version"] == "2"
    assert by_uri["models:/fm/1"].data.params["model_version"] == "1"
    assert by_uri["models:/fm/1"].data.params["source_run_id"] == first.info.run_id

    # An independent computation: the run's own .keras file, the raw test files, numpy.
    client = MlflowClient()
    model = keras.models.load_model(client.download_artifacts(second.info.run_id, "model-whole.keras", str(tmp_path)))
    images = data.read_idx(real_data_dir / "t10k-images-idx3-ubyte.gz") / 255.0
    labels = data.read_idx(real_data_dir / "t10k-labels-idx1-ubyte.gz")
    probabilities = model.predict(images, verbose=0)
    champion = by_uri["models:/fm@champion"]
    logged = champion.data.metrics
    accuracy = np.mean(probabilities.argmax(1) == labels)
    assert logged["accuracy_score"] == pytest.approx(accuracy, abs=1e-4)
    # The chapter's argmax accuracy, printed, is MLflow's accuracy_score.
    assert f"argmax accuracy {logged['accuracy_score']:.4f}; MLflow's evaluator: accuracy " in out
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-15, 1)))
    assert logged["log_loss"] == pytest.approx(loss, rel=1e-3)
    assert 0 < logged["f1_score"] <= 1 and logged["example_count"] == 10000 and 0.5 < logged["roc_auc"] <= 1
    artifacts = {a.path for a in client.list_artifacts(champion.info.run_id)}
    assert {"per_class_metrics.csv", "confusion_matrix.png", "roc_curve_plot.png",
            "precision_recall_curve_plot.png", "misclassified.png"} <= artifacts
    per_class = open(client.download_artifacts(champion.info.run_id, "per_class_metrics.csv", str(tmp_path))).read()
    assert [line.split(",")[0] for line in per_class.splitlines()[1:]] == [
        f"{index} {name}" for index, name in enumerate(data.CLASS_NAMES)]
    # Linked to the test set and to the logged model, whose Models page shows the test metrics.
    champion = client.get_run(champion.info.run_id)
    (test_set,) = [item.dataset for item in champion.inputs.dataset_inputs]
    assert test_set.name == "fashion-mnist-test" and test_set.digest == data.digest(*data.load_test(real_data_dir)[:2])
    (model_input,) = champion.inputs.model_inputs
    assert model_input.model_id == client.get_model_version("fm", "2").source.split("/")[-1]
    on_model = {m.key: m for m in client.get_logged_model(model_input.model_id).metrics}
    assert on_model["accuracy_score"].value == logged["accuracy_score"]
    assert on_model["accuracy_score"].dataset_name == "fashion-mnist-test"
