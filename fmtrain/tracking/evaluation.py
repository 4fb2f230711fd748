"""The MLflow side of evaluation: one run naming the model evaluated and its test results."""

from __future__ import annotations

import mlflow

from fmtrain.tracking.runs import tracked_run

PER_CLASS_FILE = "per-class-metrics.csv"


def log_evaluation(resolved, evaluation, figures: dict, data_source: str) -> str:
    """Log an evaluation run for ``resolved`` (a registry.ResolvedModel); returns its run id."""
    name = f"evaluate {resolved.name}/v{resolved.version}" if resolved.name else "evaluate"
    params = {"model_uri": resolved.uri, "data_source": data_source,
              "model_name": resolved.name or "none", "model_version": resolved.version or "none",
              "source_run_id": resolved.run_id or "none"}
    with tracked_run(name, params, tags={"fmtrain.evaluated_model_uri": resolved.uri}) as run_id:
        mlflow.log_metrics(evaluation.metrics)
        mlflow.log_text(evaluation.per_class_csv(), PER_CLASS_FILE)
        for file_name, figure in figures.items():
            mlflow.log_figure(figure, file_name)
    return run_id
