"""The logged model as MLflow serves it: a Keras flavor, and a ``python_function`` flavor that
checks its input and names the classes.

``mlflow.keras.load_model`` (and ``registry.load_keras_model``) load the Keras flavor, the
model itself. ``mlflow models serve`` and ``mlflow.pyfunc.load_model`` load the
``python_function`` flavor, whose loader is this module: it accepts 28x28 images as floats in
[0, 1] or integers 0-255, refuses anything else with HTTP 400 and one line, and answers per
image its class name, class index and the ten probabilities. The serving process imports this
module, so it runs where fmtrain is installed (``mlflow models serve --env-manager local``).
"""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.models import ModelSignature
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from mlflow.types.schema import Array

from fmtrain.learning import images
from fmtrain.learning.data import CLASS_NAMES

# The input is declared as one tensor of any values: MLflow's own check of a float32
# (-1, 28, 28) tensor would refuse the integers 0-255 that an image file holds, and its error
# quotes the whole input (kilobytes). ``images.as_model_input`` checks it instead.
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(object), (-1,))]),
    outputs=Schema([ColSpec(DataType.string, "class_name"), ColSpec(DataType.long, "class_index"),
                    ColSpec(Array(DataType.double), "probabilities")]))


class RefusedInput(MlflowException):
    """An input the served model refuses: HTTP 400 with one line naming the expected input.

    MLflow's scoring server prefixes the message of an MlflowException raised by ``predict``
    with the whole input (``Failed to predict data '...'``); this one keeps its own line.
    """

    def __init__(self, text: str):
        self._text = text
        super().__init__(text, error_code=INVALID_PARAMETER_VALUE)

    @property
    def message(self) -> str:
        return self._text

    @message.setter
    def message(self, value) -> None:
        pass  # the scoring server's prefix is dropped, see the class's docstring


class FashionClassifier:
    """What ``mlflow.pyfunc.load_model`` wraps: the Keras model behind a checked input."""

    def __init__(self, keras_model):
        self.keras_model = keras_model

    def predict(self, model_input, params=None):
        """A table with one row per image: class_name, class_index, probabilities (ten)."""
        import pandas as pd

        try:
            batch = images.as_model_input(model_input)
        except images.ImageInputError as error:
            raise RefusedInput(str(error)) from None
        probabilities = np.asarray(self.keras_model.predict(batch, verbose=0), dtype=np.float64)
        best = probabilities.argmax(axis=1)
        return pd.DataFrame({"class_name": [CLASS_NAMES[i] for i in best],
                             "class_index": best.astype(np.int64),
                             "probabilities": [row.tolist() for row in probabilities]})


def _load_pyfunc(data_path: str, model_config=None) -> FashionClassifier:
    """The ``python_function`` flavor's loader (MLflow's contract for a ``loader_module``):
    ``data_path`` is the model's folder, which the Keras flavor loads from."""
    return FashionClassifier(mlflow.keras.load_model(data_path))


class _Flavor:
    """What ``mlflow.models.Model.log`` calls to save the model: the Keras flavor, whose
    ``python_function`` flavor then loads through this module instead of ``mlflow.keras``."""

    @staticmethod
    def save_model(path, mlflow_model, keras_model, **kwargs):
        # mlflow.keras.save_model writes the input example before it makes the folder.
        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(keras_model, path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors["python_function"]["loader_module"] = __name__
        mlflow_model.save(str(Path(path) / "MLmodel"))


def log_classifier(keras_model, example, requirements: list[str], *, name: str, step: int):
    """Log ``keras_model`` with both flavors, the signature and ``example`` (uint8 or float
    images) as input example; returns MLflow's ModelInfo."""
    from mlflow.models import Model

    return Model.log(artifact_path=None, name=name, flavor=_Flavor, keras_model=keras_model,
                     signature=SIGNATURE, input_example=example, pip_requirements=requirements,
                     step=step)


def load_classifier(model_uri: str):
    """The ``python_function`` flavor of ``model_uri``, as ``mlflow models serve`` loads it."""
    return mlflow.pyfunc.load_model(model_uri)
