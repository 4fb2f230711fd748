"""The models a training run logs, and loading them back.

Each run logs its final model (named after its configuration: what ``runs:/RUN_ID/CONFIG``,
``fmtrain register RUN_ID`` and ``--register_as`` mean) and, when it kept one, its best
checkpoint (named ``best-checkpoint``), both MLflow 3 logged models that the experiment's Models
page lists with the metrics of their epoch. Each is self-contained: MLflow's "models from code"
with ``served_model.py`` as its code and ``learning/served_input.py`` beside it, the native
``.keras`` file as its artifact, and requirements that name Keras, the backend, numpy and pandas
(MLflow adds itself), never fmtrain. It also carries the Keras flavor, so that
``mlflow.keras.load_model`` returns the Keras model itself.

A run logs each of its models once: a run resumed after its process died, and a journal replayed
twice, find the model already logged and keep it.
"""

from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import mlflow
import numpy as np
from mlflow.models import ModelSignature
from mlflow.tracking import MlflowClient
from mlflow.types import ColSpec, DataType, Schema, TensorSpec
from mlflow.types.schema import Array

from fmtrain.learning import served_input
from fmtrain.tracking.names import CHECKPOINT_MODEL

CODE = Path(__file__).with_name("served_model.py")
# The input is declared as one tensor of any values: MLflow's own check of a float32
# (-1, 28, 28) tensor would refuse the integers 0-255 that an image file holds, and its error
# quotes the whole input (kilobytes). The model's input rules check it instead.
SIGNATURE = ModelSignature(
    inputs=Schema([TensorSpec(np.dtype(object), (-1,))]),
    outputs=Schema([ColSpec(DataType.string, "class_name"), ColSpec(DataType.long, "class_index"),
                    ColSpec(Array(DataType.double), "probabilities")]))


@dataclass(frozen=True)
class ModelToLog:
    """One model of a run: the saved ``.keras`` file, its name and the epoch its weights are of."""

    keras_file: Path
    name: str
    step: int


def checkpoint_model(keras_file: Path, epoch: int) -> ModelToLog:
    """A run's best checkpoint (saved at ``epoch``) as the model it logs beside its final one."""
    return ModelToLog(Path(keras_file), CHECKPOINT_MODEL, epoch)


class _PyfuncWithKeras:
    """What ``mlflow.models.Model.log`` saves the model with (at log time only): MLflow's pyfunc
    models from code, plus the Keras flavor, which reads the same ``.keras`` file."""

    @staticmethod
    def save_model(path, mlflow_model, keras_version: str, keras_backend: str, **kwargs):
        mlflow.pyfunc.save_model(path, mlflow_model=mlflow_model, **kwargs)
        # mlflow.keras loads <model>/<data>.keras.
        mlflow_model.add_flavor("keras", data="artifacts/model", keras_version=keras_version,
                                keras_backend=keras_backend, save_exported_model=False)
        mlflow_model.save(str(Path(path) / "MLmodel"))


def log_classifier(model: ModelToLog, example, requirements: list[str], backend: str, run_id: str) -> str:
    """Log ``model`` on the run open in this process, unless the run holds it already (READY):
    a model of that name that never became READY (its process died while logging it) is
    deleted first. Returns the model's id."""
    from mlflow.models import Model

    client = MlflowClient()
    for found in run_models(run_id, model.name):
        if found.status == "READY":
            return found.model_id
        client.delete_logged_model(found.model_id)
    keras_version = next((r.split("==")[1] for r in requirements if r.startswith("keras==")), "")
    with tempfile.TemporaryDirectory(prefix="fmtrain-model-") as folder:
        keras_file, backend_file = Path(folder) / "model.keras", Path(folder) / "keras_backend.txt"
        shutil.copyfile(model.keras_file, keras_file)
        backend_file.write_text(backend)
        info = Model.log(None, name=model.name, flavor=_PyfuncWithKeras, python_model=str(CODE),
                         artifacts={"keras_model": str(keras_file), "keras_backend": str(backend_file)},
                         code_paths=[served_input.__file__], signature=SIGNATURE, input_example=example,
                         pip_requirements=requirements, step=model.step, keras_version=keras_version,
                         keras_backend=backend)
    return info.model_id


def run_models(run_id: str, name: str | None = None) -> list:
    """The logged models of ``run_id`` (named ``name``), oldest first."""
    run = MlflowClient().get_run(run_id)
    found = MlflowClient().search_logged_models(
        experiment_ids=[run.info.experiment_id], filter_string=f"source_run_id = '{run_id}'",
        order_by=[{"field_name": "creation_timestamp", "ascending": True}])
    return [model for model in found if name is None or model.name == name]


def final_models(run_id: str) -> list:
    """The run's final models, READY, oldest first: all but its best checkpoint."""
    return [model for model in run_models(run_id) if model.name != CHECKPOINT_MODEL and model.status == "READY"]


def log_from_journal(run_id: str, entry: dict) -> str:
    """A journal's ``model`` entry, logged on the run (reopened for it if it is not open here);
    returns the model's id (the one logged already, when the entry is replayed again)."""
    from fmtrain.tracking import store

    # A journal written by fmtrain 0.2 names no backend: its requirements do.
    backend = entry.get("backend") or ("jax" if any(r.startswith("jax==") for r in entry["requirements"])
                                       else "tensorflow")
    model = ModelToLog(Path(entry["file"]), entry["name"], entry["step"])
    active = mlflow.active_run()
    started = active is None or active.info.run_id != run_id
    if started:
        store.reopen(run_id)
    try:
        return log_classifier(model, np.load(entry["example"]), entry["requirements"], backend, run_id)
    finally:
        if started:
            mlflow.end_run("RUNNING")  # the run's end is the journal's own last entry


def load_classifier(model_uri: str):
    """The ``python_function`` flavor of ``model_uri``, as ``mlflow models serve`` loads it."""
    return mlflow.pyfunc.load_model(model_uri)


def class_probabilities(classifier, images) -> np.ndarray:
    """The ten class probabilities (rows) that ``classifier`` (``load_classifier``'s) gives
    ``images``. A model logged before fmtrain's served flavor named classes answers bare
    probabilities."""
    import contextlib
    import io

    with contextlib.redirect_stdout(io.StringIO()):  # such a model draws Keras's progress bar
        answer = classifier.predict(images)
    if hasattr(answer, "columns") and "probabilities" in answer.columns:
        return np.array(answer["probabilities"].tolist(), dtype=np.float64)
    return np.asarray(answer, dtype=np.float64)
