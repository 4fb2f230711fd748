"""Images a caller hands the model: picture files and arrays, checked and converted to what it
was trained on.

The input rules themselves (28x28, floats in [0, 1] or integers 0-255, one line for anything
else) are ``served_input``'s, the file each logged model carries. Picture files (PNG, JPEG, any
size) become such images through ``picture``. Values in, values out: no MLflow, no Keras.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fmtrain.learning.served_input import CLASS_NAMES, SIZE, ImageInputError, as_model_input

__all__ = ["ImageInputError", "as_model_input", "picture", "read_images", "top_classes"]


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
