"""The code of every model fmtrain logs, as MLflow's "models from code" runs it.

MLflow copies this file into each logged model and runs it wherever the model loads (``mlflow
models serve`` in an environment of its own, ``mlflow.pyfunc.load_model``, a Docker image): it
imports MLflow, numpy, pandas and Keras, never fmtrain. The model's input rules come with it,
as the model's ``code/served_input.py`` (fmtrain's ``learning/served_input.py``, which imports
numpy alone), imported when the model first predicts: MLflow also runs this file while logging,
before that folder is on the path.

The model accepts 28x28 images as floats in [0, 1] or integers 0-255, refuses anything else with
HTTP 400 and one line, and answers per image its class name, class index and the ten
probabilities. Its artifact ``keras_model`` is the native ``.keras`` file, and its artifact
``keras_backend`` a text file naming the Keras backend it was saved on: the default of
``KERAS_BACKEND``, set before Keras is imported. (Not its ``model_config``: MLflow logs that as
params of the run that logs the model.)
"""

from __future__ import annotations

import importlib
import os

import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import INVALID_PARAMETER_VALUE

# Images per step of Keras's predict(): a request of 10,000 images in a few dozen steps.
BATCH_SIZE = 256


class RefusedInput(MlflowException):
    """An input the served model refuses: HTTP 400 with one line naming the expected input.

    MLflow's scoring server prefixes the message of an MlflowException raised by ``predict``
    with the whole input (``Failed to predict data '...'``, kilobytes); this one keeps its own
    line: its public ``message`` ignores being set again.
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


def classify(keras_model, model_input, rules):
    """The answer of ``keras_model`` for ``model_input`` checked by ``rules`` (the input rules'
    module): a pandas table with one row per image, class_name, class_index and probabilities."""
    import pandas as pd

    try:
        batch = rules.as_model_input(model_input)
    except rules.ImageInputError as error:
        raise RefusedInput(str(error)) from None
    probabilities = np.asarray(keras_model.predict(batch, batch_size=BATCH_SIZE, verbose=0), dtype=np.float64)
    return pd.DataFrame(rules.answer(probabilities))


class FashionClassifier(mlflow.pyfunc.PythonModel):
    """What ``mlflow.pyfunc.load_model`` wraps: the Keras model behind a checked input."""

    def load_context(self, context):
        with open(context.artifacts["keras_backend"]) as named:
            os.environ.setdefault("KERAS_BACKEND", named.read().strip())
        import keras

        self.keras_model = keras.saving.load_model(context.artifacts["keras_model"], compile=False)

    # The type of the input (a tensor, as the signature declares) leaves MLflow's own checks off.
    def predict(self, context, model_input: np.ndarray, params=None):
        """A table with one row per image: class_name, class_index, probabilities (ten)."""
        return classify(self.keras_model, model_input, importlib.import_module("served_input"))


mlflow.models.set_model(FashionClassifier())
