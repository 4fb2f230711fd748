"""Models after training: register a run's model, evaluate a model on the held-out test set."""

from __future__ import annotations

from dataclasses import dataclass, field

from fmtrain.analysis import descriptions
from fmtrain.errors import one_line
from fmtrain.execution import signals
from fmtrain.learning import backend as keras_backend
from fmtrain.learning import configs, data
from fmtrain.learning.scores import ClassScores, EvaluationScores, argmax_accuracy


@dataclass
class EvaluationOutcome:
    """An evaluation run: the model evaluated, its test results and the run that records them."""

    resolved: object  # fmtrain.tracking.registry.ResolvedModel
    scores: EvaluationScores  # MLflow's classifier evaluator's
    accuracy: float  # the chapter's argmax accuracy, equal to scores.accuracy_score
    per_class: list[ClassScores]
    run_id: str
    test_size: int
    warnings: list[str] = field(default_factory=list)  # follow-up steps that did not succeed


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
             backend: str = keras_backend.DEFAULT_BACKEND,
             system_metrics: float = configs.DEFAULT.system_metrics) -> EvaluationOutcome:
    """Load ``model_uri`` as it serves (its ``python_function`` flavor), evaluate it on the 10,000
    test images with MLflow's classifier evaluator, in an evaluation run.

    The model, the data and the store are checked before the evaluation run exists: the model
    must answer ten class probabilities for two test images.
    """
    from fmtrain.tracking import store

    store.open_store(experiment)
    from fmtrain.tracking import registry

    resolved = registry.resolve(model_uri)
    images, labels, source = data.load_test(data_dir)
    keras_backend.use(backend)
    from fmtrain.analysis import figures
    from fmtrain.tracking import datasets, evaluation, logged, logged_models, runs
    from fmtrain.tracking.records import Labels

    # The version resolved once is the one loaded and recorded: an alias moved meanwhile
    # changes neither.
    classifier = logged_models.load_classifier(resolved.pinned_uri)
    _check_answers(classifier, images[:2])
    name = f"evaluate {resolved.name}/v{resolved.version}" if resolved.name else "evaluate"
    params = {"model_uri": resolved.uri, "data_source": source,
              "model_name": resolved.name or "none", "model_version": resolved.version or "none",
              "source_run_id": resolved.run_id or "none",
              "system_metrics": configs.format_value(system_metrics)}
    with signals.deferred(), runs.tracked_run(name, params, labels=Labels(evaluated=resolved.uri),
                                              system_metrics=system_metrics) as run_id:
        datasets.log_data_inputs(source, [datasets.DataInput(datasets.TEST, images, labels)])
        evaluated = evaluation.evaluate_classifier(
            classifier, images, labels, source, model_id=resolved.model_id,
            figures=lambda probabilities: figures.evaluation_figures(probabilities, images, labels))
        accuracy = argmax_accuracy(evaluated.probabilities, labels)
        version = f"{resolved.name} version {resolved.version}" if resolved.name else ""
        logged.describe_run(run_id, descriptions.evaluation_description(resolved.uri, evaluated.scores, version))
    outcome = EvaluationOutcome(resolved, evaluated.scores, accuracy, evaluated.per_class, run_id, len(labels),
                                evaluated.warnings)
    if resolved.version and resolved.run_id:  # the version's description gains its test scores
        try:
            registry.describe_version(resolved.name, resolved.version,
                                      _version_text(resolved.run_id, evaluated.scores, run_id))
        except Exception as error:  # noqa: BLE001 - the evaluation is recorded; say what is not
            from fmtrain.tracking import store

            outcome.warnings.append(
                f"the description of {resolved.name} version {resolved.version} was not updated "
                f"with the test scores: {store.describe_store_error(error)}")
    return outcome


def _check_answers(classifier, images) -> None:
    """Raise ValueError unless ``classifier`` answers ten class probabilities per test image."""
    from fmtrain.tracking import logged_models

    try:
        probabilities = logged_models.class_probabilities(classifier, images)
    except Exception as error:  # noqa: BLE001 - any model's failure on the test images
        raise ValueError(f"the model cannot classify 28x28 test images: {one_line(error)}") from None
    if probabilities.shape != (len(images), len(data.CLASS_NAMES)):
        raise ValueError(f"the model gives outputs of shape {probabilities.shape[1:]}, "
                         f"not one probability per class ({len(data.CLASS_NAMES)})")
