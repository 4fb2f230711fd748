"""Models after training: register a run's model, evaluate a model on the held-out test set."""

from __future__ import annotations

from dataclasses import dataclass

from fmtrain import backend as keras_backend
from fmtrain import data


@dataclass
class EvaluationOutcome:
    """An evaluation run: the model evaluated, its test results and the run that records them."""

    resolved: object  # fmtrain.tracking.registry.ResolvedModel
    evaluation: object  # fmtrain.metrics.Evaluation
    run_id: str
    test_size: int


def register(run_id: str, name: str, alias: str | None = None) -> str:
    """Register ``run_id``'s model as a new version of ``name`` (alias moved); returns the version."""
    from fmtrain.tracking import registry, store

    store.open_store()
    return str(registry.register(run_id, name, alias).version)


def evaluate(model_uri: str, *, data_dir=None, experiment: str | None = None,
             backend: str = keras_backend.DEFAULT_BACKEND) -> EvaluationOutcome:
    """Load ``model_uri`` through MLflow, score it on the 10,000 test images, log an evaluation run.

    The model, the data and the store are checked before the evaluation run exists.
    """
    from fmtrain.tracking import store

    store.open_store(experiment)
    from fmtrain.tracking import registry

    resolved = registry.resolve(model_uri)
    images, labels, source = data.load_test(data_dir)
    keras_backend.use(backend)
    from fmtrain import metrics
    from fmtrain.tracking import logging as tracked
    from fmtrain.tracking import names, runs

    model = registry.load_keras_model(resolved.uri)
    evaluation = metrics.evaluate(model, images, labels)
    name = f"evaluate {resolved.name}/v{resolved.version}" if resolved.name else "evaluate"
    params = {"model_uri": resolved.uri, "data_source": source,
              "model_name": resolved.name or "none", "model_version": resolved.version or "none",
              "source_run_id": resolved.run_id or "none"}
    with runs.tracked_run(name, params, tags={names.EVALUATED_TAG: resolved.uri}) as run_id:
        tracked.log_evaluation(evaluation.metrics, evaluation.per_class_csv(),
                               metrics.figures(evaluation, images, labels), model_id=resolved.model_id)
    return EvaluationOutcome(resolved, evaluation, run_id, len(labels))
