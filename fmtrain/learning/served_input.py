"""The served model's input rules: 28x28 grayscale images, checked and converted, named classes.

A standalone file, importing numpy alone: each logged model carries a copy of it (MLflow's
``code_paths``), where it imports as ``served_input``, so that the model checks its input the
same way wherever it loads, fmtrain installed or not. fmtrain itself imports it as
``fmtrain.learning.served_input`` (``learning.images``, ``learning.data``).

The model reads 28x28 grayscale images as float32 in [0, 1], light clothing on a dark
background. Callers hold either that (floats in [0, 1]) or what an image file holds (integers
0-255, uint8); both are accepted and converted, anything else is refused with one line that
names the expected input.
"""

from __future__ import annotations

import numpy as np

SIZE = 28
# The dataset's classes, by index.
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
               "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot")
EXPECTED = ("expected 28x28 grayscale images, shape (n, 28, 28) or (28, 28), as floats in [0, 1] "
            "or integers 0-255 (uint8)")


class ImageInputError(ValueError):
    """An input that is not images the model can read; the message is one line under 300
    characters that names the expected input and what was wrong."""

    def __init__(self, problem: str):
        super().__init__(f"{EXPECTED}; got {problem}"[:299])


def as_model_input(values) -> np.ndarray:
    """``values`` (an array or nested lists) as float32 images in [0, 1], shape (n, 28, 28).

    Integers (any integer dtype, or JSON numbers without a fraction) must lie in 0-255 and are
    divided by 255; floats must lie in [0, 1]. Raises ImageInputError for text, NaN, infinite or
    out-of-range values and any other shape.
    """
    array = _numeric(values)
    shape = array.shape
    if array.ndim == 2:
        array = array[np.newaxis]
    if array.ndim != 3 or array.shape[1:] != (SIZE, SIZE) or len(array) == 0:
        raise ImageInputError(f"shape {shape}")
    if array.dtype.kind in "iu":
        low, high = int(array.min()), int(array.max())
        if low < 0 or high > 255:
            raise ImageInputError(f"integers from {low} to {high}, outside 0-255")
        return array.astype(np.float32) / np.float32(255.0)
    if not np.isfinite(array).all():
        bad = "NaN" if np.isnan(array).any() else "infinite values"
        raise ImageInputError(bad)
    low, high = float(array.min()), float(array.max())
    if low < 0 or high > 1:
        raise ImageInputError(f"floats from {low:g} to {high:g}, outside [0, 1] (integers 0-255 "
                              "must be sent without a fraction)")
    return array.astype(np.float32)


def _numeric(values) -> np.ndarray:
    """An array of integers or floats; object arrays (a served request's JSON) are re-read so
    that numpy infers their type, ints staying ints."""
    try:
        array = np.asarray(values)
        if array.dtype == object:
            array = np.array(array.tolist())
    except (ValueError, TypeError):  # nested lists of unequal lengths
        raise ImageInputError("nested lists of unequal lengths (not a grid of pixels)") from None
    if array.dtype.kind == "b":
        raise ImageInputError("true/false values")
    if array.dtype.kind not in "iuf":
        raise ImageInputError(f"{_kind_name(array)} values")
    return array


def _kind_name(array: np.ndarray) -> str:
    return {"U": "text", "S": "bytes", "O": "mixed"}.get(array.dtype.kind, str(array.dtype))


def answer(probabilities: np.ndarray) -> dict:
    """The served answer for each image's ten ``probabilities`` (rows): its class name, class
    index and the probabilities, as columns."""
    best = probabilities.argmax(axis=1)
    return {"class_name": [CLASS_NAMES[i] for i in best], "class_index": best.astype(np.int64),
            "probabilities": [row.tolist() for row in probabilities]}
