"""``fmtrain predict``: a logged or registered model's answer for picture files, as served.

The pictures are read and converted first (``learning.images``), then the model is loaded
through its ``python_function`` flavor, the one ``mlflow models serve`` answers with.
"""

from __future__ import annotations

import contextlib
import io
from dataclasses import dataclass

import numpy as np

from fmtrain.learning import backend, images


@dataclass(frozen=True)
class Prediction:
    """One image's answer: where it came from and its most probable classes, best first."""

    source: str
    top: list[tuple[str, float]]


def predict(model_uri: str, paths: list[str], *, top: int = 3) -> list[Prediction]:
    """Classify the pictures (PNG, JPEG) and ``.npy`` arrays of images at ``paths``.

    Raises ValueError naming a file that cannot be read or a model that cannot be found.
    """
    batch, sources = images.read_images(paths)
    from fmtrain.tracking import registry, serving, store

    store.open_store()
    resolved = registry.resolve(model_uri)
    backend.use(backend.DEFAULT_BACKEND)
    model = serving.load_classifier(resolved.uri)
    # A model logged by fmtrain before its served flavor named classes answers bare probabilities
    # (and draws Keras's progress bar).
    with contextlib.redirect_stdout(io.StringIO()):
        answer = model.predict(batch)
    probabilities = (np.array(answer["probabilities"].tolist()) if hasattr(answer, "columns")
                     else np.asarray(answer))
    return [Prediction(source, images.top_classes(row, top))
            for source, row in zip(sources, probabilities, strict=True)]
