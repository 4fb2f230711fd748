"""What MLflow shows beside a run's own metrics: the data it used (dataset inputs with digests)
and the machine's use while it ran (system metrics)."""

from __future__ import annotations

import os

import mlflow
import numpy as np
from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main
from fmtrain.learning import data

from conftest import all_runs, fmtrain_here

SYSTEM_CURVES = ("system/cpu_utilization_percentage", "system/system_memory_usage_megabytes",
                 "system/system_memory_usage_percentage")


def inputs(run) -> dict[str, object]:
    """A run's dataset inputs by context (training, validation, test)."""
    return {tag.value: item.dataset for item in run.inputs.dataset_inputs
            for tag in item.tags if tag.key == "mlflow.data.context"}


def test_training_runs_log_their_splits_with_digests_of_the_arrays_and_can_be_found_by_them(
        store, tiny_data_dir):
    for limit in ("0", "100"):
        assert main(["train", "--config", "adam", "--epochs", "1", "--limit", limit, "--quiet",
                     "--data_dir", str(tiny_data_dir), "--system_metrics", "0"]) == 0
    whole, subset = sorted(all_runs(), key=lambda run: run.info.start_time)
    splits = {"0": data.load_splits(tiny_data_dir, 0), "100": data.load_splits(tiny_data_dir, 100)}
    for run, limit in ((whole, "0"), (subset, "100")):
        found = inputs(run)
        assert set(found) == {"training", "validation"}
        assert found["training"].name == "fashion-mnist-train"
        assert found["validation"].name == "fashion-mnist-validation"
        assert f'"uri": "{tiny_data_dir}"' in found["training"].source
        assert found["training"].digest == data.digest(splits[limit].x_train, splits[limit].y_train)
        assert found["validation"].digest == data.digest(splits[limit].x_val, splits[limit].y_val)
        assert f'"features_shape": [{len(splits[limit].y_train)}, 28, 28]' in found["training"].profile
    assert inputs(whole)["training"].digest != inputs(subset)["training"].digest
    assert inputs(whole)["validation"].digest != inputs(subset)["validation"].digest
    digest = inputs(subset)["training"].digest
    (found,) = mlflow.search_runs(experiment_names=["fashion-mnist"], output_format="list",
                                  filter_string=f"dataset.digest = '{digest}'")
    assert found.info.run_id == subset.info.run_id
    assert len(mlflow.search_runs(experiment_names=["fashion-mnist"], output_format="list",
                                  filter_string="dataset.name = 'fashion-mnist-train'")) == 2


def test_the_digest_is_of_the_values_not_of_the_objects():
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    labels = np.array([3, 4], dtype=np.uint8)
    assert data.digest(images, labels) == data.digest(images.copy(), labels.copy())
    assert data.digest(images, labels) != data.digest(images, labels[::-1].copy())
    assert data.digest(images[:, ::-1], labels) != data.digest(images, labels)
    assert len(data.digest(images, labels)) == 16


def test_an_evaluation_run_logs_the_test_set(registered_model, tiny_data_dir):
    env = dict(os.environ, MLFLOW_TRACKING_URI=registered_model.tracking_uri)
    done = fmtrain_here(["evaluate", "--model_uri", registered_model.model_uri, "--data_dir", tiny_data_dir,
                         "--system_metrics", "0"], env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    run_id = done.stdout.split("evaluation run ")[1].split()[0]
    run = MlflowClient(registered_model.tracking_uri).get_run(run_id)
    found = inputs(run)
    assert set(found) == {"test"} and found["test"].name == "fashion-mnist-test"
    images, labels, _ = data.load_test(tiny_data_dir)
    assert found["test"].digest == data.digest(images, labels)
    assert run.data.params["system_metrics"] == "0.0"
    training = MlflowClient(registered_model.tracking_uri).get_run(registered_model.run_id)
    assert set(inputs(training)) == {"training", "validation"}


def test_a_run_carries_system_metrics_curves_and_none_when_they_are_off(store, tiny_data_dir):
    for seconds in ("0.2", "0"):
        assert main(["train", "--config", "adam", "--epochs", "2", "--limit", "100", "--quiet",
                     "--data_dir", str(tiny_data_dir), "--system_metrics", seconds]) == 0
    sampled, off = sorted(all_runs(), key=lambda run: run.info.start_time)
    client = MlflowClient()
    assert sampled.data.params["system_metrics"] == "0.2" and off.data.params["system_metrics"] == "0.0"
    for key in SYSTEM_CURVES:
        history = client.get_metric_history(sampled.info.run_id, key)
        assert len(history) >= 2, (key, history)
        assert [point.step for point in history] == list(range(len(history)))
    assert not [key for key in off.data.metrics if key.startswith("system/")]
