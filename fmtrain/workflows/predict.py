"""``fmtrain predict``: a logged or registered model's answer for picture files, as served.

The pictures are read and converted first (``learning.images``), then the model is loaded
through its ``python_function`` flavor, the one ``mlflow models serve`` answers with.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    from fmtrain.tracking import logged_models, registry, store

    store.open_store()
    resolved = registry.resolve(model_uri)
    backend.use(backend.DEFAULT_BACKEND)
    probabilities = logged_models.class_probabilities(logged_models.load_classifier(resolved.uri), batch)
    return [Prediction(source, images.top_classes(row, top))
            for source, row in zip(sources, probabilities, strict=True)]
