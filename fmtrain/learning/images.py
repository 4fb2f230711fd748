"""Images a caller hands the model: checked and converted to what it was trained on.

The model reads 28x28 grayscale images as float32 in [0, 1], light clothing on a dark
background. Callers hold either that (floats in [0, 1]) or what an image file holds (integers
0-255, uint8); both are accepted and converted, anything else is refused with one line that
names the expected input. Picture files (PNG, JPEG, any size) become such images through
``picture``. Values in, values out: no MLflow, no Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmtrain.learning.data import CLASS_NAMES

SIZE = 28
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


def picture(path: str | Path) -> np.ndarray:
    """A picture file (PNG, JPEG, any size) as a 28x28 uint8 image like the dataset's.

    It is made grayscale, fitted into 28x28 keeping its proportions (centred, padded with its
    background), and inverted when its background (the mean of its border) is light: the
    dataset's images are light clothing on black.
    """
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            gray = np.asarray(ImageOps.exif_transpose(opened).convert("L"), dtype=np.uint8)
    except UnidentifiedImageError:
        raise ValueError(f"{path}: not a picture file (PNG or JPEG)") from None
    except FileNotFoundError:
        raise ValueError(f"{path}: file not found") from None
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    if border.mean() > 127:
        gray = 255 - gray
    background = int(np.median(np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])))
    scale = SIZE / max(gray.shape)
    width, height = (max(1, round(side * scale)) for side in (gray.shape[1], gray.shape[0]))
    image = Image.fromarray(gray).resize((width, height), Image.Resampling.LANCZOS)
    canvas = Image.new("L", (SIZE, SIZE), background)
    canvas.paste(image, ((SIZE - image.width) // 2, (SIZE - image.height) // 2))
    return np.asarray(canvas, dtype=np.uint8)


def read_images(paths: list[str]) -> tuple[np.ndarray, list[str]]:
    """Picture files and ``.npy`` files of images as one uint8 or float array (n, 28, 28) and
    one label per image (the file, and ``[i]`` for the images of a ``.npy``)."""
    images, names = [], []
    for path in paths:
        if str(path).endswith(".npy"):
            try:
                array = np.load(path, allow_pickle=False)
            except (OSError, ValueError) as error:
                raise ValueError(f"{path}: cannot be read as a .npy array ({error})") from None
            try:
                array = as_model_input(array)
            except ImageInputError as error:
                raise ValueError(f"{path}: {error}") from None
            images.extend(array)
            names.extend(f"{path}[{i}]" for i in range(len(array)))
        else:
            images.append(picture(path).astype(np.float32) / np.float32(255.0))
            names.append(str(path))
    return np.stack(images), names


def top_classes(probabilities, count: int = 3) -> list[tuple[str, float]]:
    """The ``count`` most probable classes of one image, as (name, probability), best first."""
    order = np.argsort(probabilities)[::-1][:count]
    return [(CLASS_NAMES[i], float(probabilities[i])) for i in order]
