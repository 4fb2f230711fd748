"""Models after training: register a run's model, evaluate a model on the held-out test set."""

from __future__ import annotations

from dataclasses import dataclass

from fmtrain.analysis import descriptions
from fmtrain.learning import backend as keras_backend
from fmtrain.learning import data


@dataclass
class EvaluationOutcome:
    """An evaluation run: the model evaluated, its test results and the run that records them."""

    resolved: object  # fmtrain.tracking.registry.ResolvedModel
    evaluation: object  # fmtrain.learning.scoring.Evaluation
    run_id: str
    test_size: int


def register(run_id: str, name: str, alias: str | None = None) -> str:
    """``fmtrain register``: open the store, then ``register_described``."""
    from fmtrain.tracking import store

    store.open_store()
    return register_described(run_id, name, alias)


def register_described(run_id: str, name: str, alias: str | None = None) -> str:
    """Register ``run_id``'s model as a new version of ``name`` (alias moved), described by its
    source run, configuration and validation scores; returns the version."""
    from fmtrain.tracking import registry

    version = str(registry.register(run_id, name, alias).version)
    registry.describe_version(name, version, _version_text(run_id))
    return version


def _version_text(run_id: str, test=None, evaluation_run_id: str | None = None) -> str:
    """The version's description; ``test``: its test Scores once evaluated."""
    from fmtrain.tracking import queries

    (record,) = queries.fetch_records([run_id])
    return descriptions.version_description(run_id, record.params, record.scores, test, evaluation_run_id)


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
    from fmtrain.analysis import figures, tables
    from fmtrain.learning import scoring
    from fmtrain.tracking import logged, names, runs

    model = registry.load_keras_model(resolved.uri)
    evaluation = scoring.evaluate(model, images, labels)
    name = f"evaluate {resolved.name}/v{resolved.version}" if resolved.name else "evaluate"
    params = {"model_uri": resolved.uri, "data_source": source,
              "model_name": resolved.name or "none", "model_version": resolved.version or "none",
              "source_run_id": resolved.run_id or "none"}
    with runs.tracked_run(name, params, tags={names.EVALUATED_TAG: resolved.uri}) as run_id:
        logged.log_evaluation(evaluation.metrics, tables.per_class_csv(evaluation.per_class),
                               figures.evaluation_figures(evaluation, images, labels), model_id=resolved.model_id)
        version = f"{resolved.name} version {resolved.version}" if resolved.name else ""
        logged.describe_run(run_id, descriptions.evaluation_description(resolved.uri, evaluation.scores, version))
    if resolved.version and resolved.run_id:  # the version's description gains its test scores
        registry.describe_version(resolved.name, resolved.version,
                                  _version_text(resolved.run_id, evaluation.scores, run_id))
    return EvaluationOutcome(resolved, evaluation, run_id, len(labels))
