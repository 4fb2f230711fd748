"""The test-set evaluation: MLflow's classifier evaluator fed the served model's probabilities,
checked against an independent computation on arrays the test makes itself."""

import mlflow
import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient

from fmtrain.analysis import figures
from fmtrain.learning.data import CLASS_NAMES
from fmtrain.learning.scores import argmax_accuracy
from fmtrain.tracking import evaluation


class Answers:
    """A classifier that answers as the served model does (a table with the ten probabilities),
    with fixed probabilities for the images it is given, found by their first pixel."""

    def __init__(self, probabilities):
        self.probabilities = probabilities

    def predict(self, images):
        rows = np.rint(np.asarray(images)[:, 0, 0] * 1000).astype(int)
        return pd.DataFrame({"probabilities": [row.tolist() for row in self.probabilities[rows]]})


def test_mlflows_scores_and_the_extra_metrics_match_an_independent_computation(store, tmp_path):
    rng = np.random.default_rng(0)
    labels = np.arange(200) % 10
    probabilities = rng.dirichlet(np.ones(10), size=200)
    probabilities[np.arange(150), labels[:150]] += 2.0  # 150 right, the rest at random
    probabilities /= probabilities.sum(axis=1, keepdims=True)
    images = np.zeros((200, 28, 28), dtype=np.float32)
    images[:, 0, 0] = np.arange(200) / 1000  # which row of probabilities each image gets
    mlflow.set_experiment("fashion-mnist")
    with mlflow.start_run() as run:
        evaluated = evaluation.evaluate_classifier(
            Answers(probabilities), images, labels, str(tmp_path), model_id=None,
            figures=lambda p: figures.evaluation_figures(p, images, labels))
    predicted = probabilities.argmax(axis=1)
    assert evaluated.scores.accuracy_score == argmax_accuracy(probabilities, labels) == np.mean(predicted == labels)
    f1 = []
    for c in range(10):
        tp = np.sum((predicted == c) & (labels == c))
        precision, recall = tp / max(1, np.sum(predicted == c)), tp / np.sum(labels == c)
        f1.append(0 if tp == 0 else 2 * precision * recall / (precision + recall))
    # Each class has 20 images: the weighted mean of the F1 scores is their plain mean.
    assert evaluated.scores.f1_score == pytest.approx(np.mean(f1), abs=1e-12)
    assert [row.f1 for row in evaluated.per_class] == pytest.approx(f1, abs=1e-12)
    assert [row.name for row in evaluated.per_class] == list(CLASS_NAMES)
    loss = -np.mean(np.log(probabilities[np.arange(200), labels]))
    assert evaluated.scores.log_loss == pytest.approx(loss, rel=1e-9)
    assert 0.5 < evaluated.scores.roc_auc <= 1 and evaluated.scores.example_count == 200
    np.testing.assert_array_equal(evaluated.probabilities, probabilities)

    logged = MlflowClient().get_run(run.info.run_id)
    assert {"accuracy_score", "f1_score", "precision_score", "recall_score", "log_loss", "roc_auc",
            "example_count"} <= set(logged.data.metrics)
    assert {a.path for a in MlflowClient().list_artifacts(run.info.run_id)} == {
        "confusion_matrix.png", "per_class_metrics.csv", "roc_curve_plot.png", "precision_recall_curve_plot.png",
        "misclassified.png"}
    (test_set,) = [item.dataset for item in logged.inputs.dataset_inputs]
    assert test_set.name == "fashion-mnist-test"


def test_figures_name_the_classes():
    labels = np.arange(20) % 10
    probabilities = np.eye(10)[(labels + 1) % 10] * 0.9 + 0.01  # every prediction wrong
    drawn = figures.evaluation_figures(probabilities, np.zeros((20, 28, 28)), labels)
    assert set(drawn) == {"roc_curve_plot", "precision_recall_curve_plot", "misclassified"}
    for name in ("roc_curve_plot", "precision_recall_curve_plot"):
        legend = [text.get_text() for text in drawn[name].axes[0].get_legend().get_texts()]
        assert [entry.rsplit(" (", 1)[0] for entry in legend] == list(CLASS_NAMES)
    titles = [a.get_title() for a in drawn["misclassified"].axes if a.get_title()]
    assert len(titles) == 20 and titles[0] == f"{CLASS_NAMES[labels[0]]}\n-> {CLASS_NAMES[(labels[0] + 1) % 10]}"


def test_the_report_reads_each_runs_test_accuracy_from_its_latest_evaluation(store):
    """MLflow's accuracy_score; test_accuracy in an evaluation run of fmtrain 0.2."""
    from fmtrain.tracking import queries

    client = MlflowClient()
    experiment = mlflow.set_experiment("fashion-mnist").experiment_id
    trained = [client.create_run(experiment).info.run_id for _ in range(3)]
    for source, metric, value in ((trained[0], "test_accuracy", 0.81), (trained[1], "accuracy_score", 0.85),
                                  (trained[1], "accuracy_score", 0.86)):
        evaluation = client.create_run(experiment).info.run_id
        client.log_param(evaluation, "source_run_id", source)
        client.log_metric(evaluation, metric, value)
    assert queries.test_accuracies(trained) == {trained[0]: 0.81, trained[1]: 0.86}
