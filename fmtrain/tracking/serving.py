"""The loader of models logged by fmtrain 0.2: their ``python_function`` flavor names this
module (MLflow's ``loader_module``), so they load where fmtrain is installed.

They hold the Keras flavor, which this loader wraps behind the same input rules and answer as
the self-contained models fmtrain logs (``served_model``). docs/serving.md says how to log such
a model again as a self-contained one.
"""

from __future__ import annotations

import mlflow

from fmtrain.learning import served_input
from fmtrain.tracking import mlflow_internals


class LegacyClassifier:
    """What ``mlflow.pyfunc.load_model`` wraps for such a model: its Keras model behind a
    checked input."""

    def __init__(self, keras_model):
        self.keras_model = keras_model

    def predict(self, model_input, params=None):
        """A table with one row per image: class_name, class_index, probabilities (ten)."""
        from fmtrain.tracking import served_model

        return served_model.classify(self.keras_model, model_input, served_input)


def load(data_path: str, model_config=None) -> LegacyClassifier:
    """MLflow's contract for a ``loader_module``: ``data_path`` is the model's folder, which
    the Keras flavor loads from."""
    return LegacyClassifier(mlflow.keras.load_model(data_path))


# The name MLflow calls this module's loader by (its contract, checked in the adapter).
globals()[mlflow_internals.PYFUNC_LOADER] = load
