"""A model's evaluation on the test images through MLflow's classifier evaluator
(``mlflow.models.evaluate``), in the evaluation run open in this process.

MLflow's evaluator logs accuracy_score, f1_score, precision_score, recall_score and
example_count, the per-class metrics (``per_class_metrics.csv``) and the confusion matrix
(``confusion_matrix.png``), its axes named by the classes; it links the run to the test set's
dataset and to the logged model, whose Models page then shows the test metrics. It reads the
class probabilities only of scikit-learn's and a few other libraries' models, so fmtrain hands
them over itself: the model MLflow evaluates is a function that asks the served model for them,
keeps them and answers one label per image; the extra metrics (log_loss, roc_auc) and the
figures (ROC and precision-recall curves, misclassified images) are computed from them.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import mlflow
import numpy as np

from fmtrain.learning.scores import ClassScores, EvaluationScores
from fmtrain.learning.served_input import CLASS_NAMES, SIZE
from fmtrain.tracking import datasets, logged_models
from fmtrain.tracking.store_errors import Fault, classify

# The classes as the evaluator labels them: MLflow sorts its labels, and "0 T-shirt/top" ...
# "9 Ankle boot" sort in the dataset's order, which the probabilities' columns follow.
LABELS = np.array([f"{index} {name}" for index, name in enumerate(CLASS_NAMES)])


@dataclass
class Evaluated:
    """An evaluation's results: MLflow's scores, its per-class rows, the class probabilities it
    was computed from, and what could not be done."""

    scores: EvaluationScores
    per_class: list[ClassScores]
    probabilities: np.ndarray
    warnings: list[str] = field(default_factory=list)


class _Scored:
    """The model as MLflow's evaluator calls it: rows of 784 pixels in, one label per image out;
    the served model's class probabilities kept for the metrics and figures."""

    def __init__(self, classifier):
        self.classifier = classifier
        self.probabilities = np.empty((0, len(LABELS)))

    def __call__(self, frame):
        import pandas as pd

        images = np.asarray(frame, dtype=np.float32).reshape(len(frame), SIZE, SIZE)
        self.probabilities = logged_models.class_probabilities(self.classifier, images)
        return pd.Series(LABELS[self.probabilities.argmax(axis=1)])


def evaluate_classifier(classifier, images: np.ndarray, labels: np.ndarray, source: str, *,
                        model_id: str | None, figures: Callable[[np.ndarray], dict]) -> Evaluated:
    """Evaluate ``classifier`` (``logged_models.load_classifier``'s) on ``images`` (float32 in
    [0, 1]) and integer ``labels`` from ``source``, linked to the logged model ``model_id`` if
    known; ``figures`` draws the evaluation's figures (by name) from the class probabilities.

    A model that this user may read but not edit keeps the evaluation unlinked, with a warning.
    """
    import warnings

    from sklearn.exceptions import UndefinedMetricWarning

    scored, problems = _Scored(classifier), []
    # A class the model never predicts has no precision: MLflow's evaluator counts it 0, as the
    # per-class table shows, and scikit-learn's warning would only repeat it.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UndefinedMetricWarning)
        try:
            result = _evaluate(scored, images, labels, source, model_id, figures)
        except Exception as error:
            if model_id is None or classify(error) is not Fault.FORBIDDEN:
                raise
            result = _evaluate(scored, images, labels, source, None, figures)
            problems.append(f"the test metrics are not linked to the logged model {model_id} (this user may "
                            "not edit it); the evaluation run holds them")
    table = result.artifacts["per_class_metrics"].content
    per_class = [ClassScores(str(row.positive_class).split(" ", 1)[1], float(row.precision_score),
                             float(row.recall_score), float(row.f1_score)) for row in table.itertuples()]
    return Evaluated(EvaluationScores.from_metrics(result.metrics), per_class, scored.probabilities, problems)


def _evaluate(scored: _Scored, images, labels, source: str, model_id: str | None, figures):
    from mlflow.metrics import MetricValue
    from mlflow.models import make_metric
    from sklearn import metrics as skm

    classes = list(range(len(LABELS)))

    def probability_metric(name: str, compute, greater_is_better: bool):
        # MLflow tries each metric on the first image alone first (and says so when it gives
        # none): only the whole set has its probabilities.
        def metric(predictions, targets, metrics):
            if len(predictions) != len(scored.probabilities):
                return None
            # The probabilities of float32 softmax outputs sum to 1 within its rounding only.
            probabilities = scored.probabilities / scored.probabilities.sum(axis=1, keepdims=True)
            return MetricValue(aggregate_results={name: float(compute(labels, probabilities))})

        return make_metric(eval_fn=metric, greater_is_better=greater_is_better, name=name)

    def curves(eval_df, builtin_metrics, artifacts_dir):
        return figures(scored.probabilities)

    return mlflow.models.evaluate(
        model=scored, data=datasets.test_set(source, images, labels, LABELS[labels]), model_type="classifier",
        evaluators=["default"], model_id=model_id, custom_artifacts=[curves],
        evaluator_config={"default": {"label_list": list(LABELS), "log_model_explainability": False}},
        extra_metrics=[
            probability_metric("log_loss", lambda y, p: skm.log_loss(y, p, labels=classes), False),
            probability_metric("roc_auc", lambda y, p: skm.roc_auc_score(y, p, labels=classes, multi_class="ovr"),
                               True)])
