"""The data a run used, as MLflow dataset inputs: what the UI's Datasets filter and
``search_runs(filter_string="dataset.digest = '...'")`` find.

Each input names its split (``fashion-mnist-train``, ``-validation``, ``-test``), its source
(the IDX files' folder, or the URL Keras downloads them from) and a digest of the arrays
themselves (``learning.data.digest``), so a ``limit`` subset is told apart from the whole set.
"""

from __future__ import annotations

from dataclasses import dataclass

import mlflow
import numpy as np

from fmtrain.learning import data
from fmtrain.tracking.store_errors import Fault, classify

TRAINING, VALIDATION, TEST = "training", "validation", "test"
NAMES = {TRAINING: "fashion-mnist-train", VALIDATION: "fashion-mnist-validation",
         TEST: "fashion-mnist-test"}


@dataclass(frozen=True)
class DataInput:
    """One split a run used: its context (training, validation, test), images and labels."""

    context: str
    images: np.ndarray
    labels: np.ndarray


def log_data_inputs(source: str, inputs: list[DataInput]) -> dict[str, str]:
    """Log ``inputs`` (from ``source``, a ``Splits.source``) on the active run in one request;
    returns each context's digest."""
    origin = _origin(source)
    digests = {item.context: data.digest(item.images, item.labels) for item in inputs}
    datasets = [mlflow.data.from_numpy(item.images, targets=item.labels, source=origin,
                                       name=NAMES[item.context], digest=digests[item.context])
                for item in inputs]
    for attempt in range(2):
        try:
            mlflow.log_inputs(datasets=datasets, contexts=[item.context for item in inputs],
                              tags_list=[None] * len(inputs))
            break
        except mlflow.exceptions.MlflowException as error:
            # Two runs (a sweep's workers, a team's members) that log a new dataset at the same
            # moment both try to create it; the one that loses finds it made on a second try. A
            # server reports that loss as the database's refusal (BAD_REQUEST), sqlite as a
            # constraint's (ALREADY_EXISTS): either is tried once more.
            if attempt or classify(error) not in (Fault.ALREADY_EXISTS, Fault.REFUSED):
                raise
    return digests


def _origin(source: str):
    """Where data came from (a ``Splits.source``), as MLflow's dataset source."""
    from mlflow.data.sources import LocalArtifactDatasetSource

    location = data.source_location(source)
    if location.startswith("https://"):
        from mlflow.data.http_dataset_source import HTTPDatasetSource

        return HTTPDatasetSource(location)
    return LocalArtifactDatasetSource(location)


def test_set(source: str, images: np.ndarray, labels: np.ndarray, targets: np.ndarray):
    """The test set as the dataset ``mlflow.models.evaluate`` reads: one row of 784 pixels per
    image, ``targets`` (one label per image) as its targets; the same name, source and digest
    (of ``images`` and ``labels``) as the test set's dataset input (``log_data_inputs``), so
    that the store keeps one dataset."""
    return mlflow.data.from_numpy(images.reshape(len(images), -1), targets=targets, source=_origin(source),
                                  name=NAMES[TEST], digest=data.digest(images, labels))


def split_inputs(splits: data.Splits) -> list[DataInput]:
    """A training run's inputs: its training and validation splits."""
    return [DataInput(TRAINING, splits.x_train, splits.y_train),
            DataInput(VALIDATION, splits.x_val, splits.y_val)]
