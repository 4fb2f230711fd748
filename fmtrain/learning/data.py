"""Fashion-MNIST: the four IDX files, the chapter's train/validation split, and the test set.

Sources, in order: an explicit directory (``--data_dir`` or ``FMTRAIN_DATA_DIR``), the Debian
package ``dataset-fashion-mnist``'s directory, then Keras's own downloading loader.
Images stay uint8 (a quarter of float32's memory); ``scale`` turns them into float32 in [0, 1],
the same values the chapter's float64 ``/ 255.0`` gives once Keras casts it to float32.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fmtrain.learning.served_input import CLASS_NAMES  # with the input rules each model carries

ENV_VAR = "FMTRAIN_DATA_DIR"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# Where Keras's loader downloads the four files from, the source of data it downloaded.
KERAS_SOURCE = "keras.datasets.fashion_mnist"
KERAS_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/"
# The chapter's split: train_test_split(test_size=0.2, random_state=42).
VAL_FRACTION = 0.2
SPLIT_SEED = 42


class DataError(ValueError):
    """A data file or directory that cannot be used; the message names it and the problem."""


@dataclass(frozen=True)
class Splits:
    """Training and validation arrays: uint8 images (``scale`` them for a model) and labels."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    source: str


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read one IDX file (gzip-compressed or plain) of unsigned bytes into an array."""
    path = Path(path)
    try:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except (OSError, EOFError, zlib.error) as error:
        raise DataError(f"{path}: cannot be read ({error}); the file is truncated or corrupt") from None
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number)")
    if raw[2] != 0x08:
        raise DataError(f"{path}: IDX data type 0x{raw[2]:02x} is not unsigned bytes (0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header")
    shape = tuple(int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(shape))
    if len(raw) != expected:
        raise DataError(f"{path}: holds {len(raw) - header} data bytes but its header "
                        f"{shape} says {expected - header}; the file is truncated or corrupt")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def locate(data_dir: str | os.PathLike | None = None) -> Path | None:
    """The directory to read, or None to fall back on Keras's downloading loader."""
    explicit = data_dir or os.environ.get(ENV_VAR)
    if explicit:
        explicit = Path(explicit).expanduser()
        if not explicit.is_dir():
            raise DataError(f"{explicit}: data directory not found")
        return explicit
    return DEBIAN_DIR if DEBIAN_DIR.is_dir() else None


def _find_file(directory: Path, stem: str) -> Path:
    for candidate in (directory / f"{stem}.gz", directory / stem):
        if candidate.exists():
            return candidate
    raise DataError(f"{directory / (stem + '.gz')}: file not found (the directory must hold the "
                    f"four Fashion-MNIST IDX files)")


def load_raw(data_dir=None, kinds: tuple[str, ...] = ("train", "test")) -> tuple[dict[str, np.ndarray], str]:
    """The uint8 arrays of ``kinds`` (``train``, ``test``), keyed like FILES, and where they
    came from."""
    directory = locate(data_dir)
    if directory is None:
        arrays = _download()
        return {key: value for key, value in arrays.items() if key.split("_")[0] in kinds}, \
            KERAS_SOURCE
    arrays = {key: read_idx(_find_file(directory, stem)) for key, stem in FILES.items()
              if key.split("_")[0] in kinds}
    for kind in kinds:
        images, labels = arrays[f"{kind}_images"], arrays[f"{kind}_labels"]
        if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(labels):
            raise DataError(f"{directory}: {kind} images {images.shape} and labels {labels.shape} "
                            f"do not form a 28x28 Fashion-MNIST set")
        check_labels(labels, _find_file(directory, FILES[f"{kind}_labels"]))
    return arrays, str(directory)


def check_labels(labels: np.ndarray, source) -> None:
    """Refuse labels outside the 10 classes, naming the file and the first bad one."""
    bad = np.flatnonzero(labels >= len(CLASS_NAMES))
    if len(bad):
        raise DataError(f"{source}: {len(bad)} label(s) outside 0-{len(CLASS_NAMES) - 1} "
                        f"(the first, at index {bad[0]}, is {labels[bad[0]]}); the file is not "
                        "Fashion-MNIST's")


def _download() -> dict[str, np.ndarray]:
    import keras  # only users who are online reach this path

    try:
        (x_train, y_train), (x_test, y_test) = keras.datasets.fashion_mnist.load_data()
    except Exception as error:  # noqa: BLE001 - Keras raises a bare Exception when offline
        raise DataError(f"no local Fashion-MNIST files and Keras could not download them "
                        f"({str(error).splitlines()[0]}); install the Debian package "
                        f"dataset-fashion-mnist or pass --data_dir") from None
    return dict(train_images=x_train, train_labels=y_train, test_images=x_test, test_labels=y_test)


def digest(images: np.ndarray, labels: np.ndarray) -> str:
    """A digest of the actual arrays (shape, pixels and labels): 16 hex digits of SHA-256.

    Two runs share it exactly when they saw the same images with the same labels in the same
    order, whatever file they came from; a ``limit`` subset has its own.
    """
    hasher = hashlib.sha256()
    for array in (images, labels):
        array = np.ascontiguousarray(array)
        hasher.update(f"{array.dtype.str}{array.shape}".encode())
        hasher.update(memoryview(array).cast("B"))
    return hasher.hexdigest()[:16]


def source_location(source: str) -> str:
    """Where the files of ``source`` (a ``Splits.source``) can be fetched: the IDX files'
    folder, or the URL Keras downloads them from."""
    return KERAS_URL if source == KERAS_SOURCE else source


def scale(images: np.ndarray) -> np.ndarray:
    """uint8 pixels to float32 in [0, 1]."""
    return images.astype(np.float32) / np.float32(255.0)


def chapter_split(count: int) -> tuple[np.ndarray, np.ndarray]:
    """Train and validation indices exactly as ``train_test_split(test_size=0.2, random_state=42)``.

    scikit-learn's ShuffleSplit draws one permutation from ``RandomState(42)`` and takes the
    test indices first; the same two lines here spare every run scikit-learn's import (about
    a second). A test checks them against scikit-learn.
    """
    permutation = np.random.RandomState(SPLIT_SEED).permutation(count)
    test_size = int(np.ceil(VAL_FRACTION * count))
    return permutation[test_size:], permutation[:test_size]


def split_indices(labels: np.ndarray, limit: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the chapter's train/validation split, optionally a stratified subset of each."""
    train_idx, val_idx = chapter_split(len(labels))
    if limit > len(train_idx):
        raise DataError(f"limit {limit} is more than the {len(train_idx):,} training images; "
                        "use 0 for all of them")
    if limit and limit < len(train_idx):
        val_size = max(10, round(limit * VAL_FRACTION / (1 - VAL_FRACTION)))
        train_idx = _stratified(train_idx, labels, limit)
        val_idx = _stratified(val_idx, labels, min(val_size, len(val_idx)))
    return train_idx, val_idx


def _stratified(indices: np.ndarray, labels: np.ndarray, size: int) -> np.ndarray:
    from sklearn.model_selection import train_test_split

    if size >= len(indices):
        return indices
    subset, _ = train_test_split(indices, train_size=size, stratify=labels[indices],
                                 random_state=SPLIT_SEED)
    return subset


def load_splits(data_dir=None, limit: int = 0) -> Splits:
    """The chapter's 48,000 / 12,000 split of the training images (or a stratified subset)."""
    arrays, source = load_raw(data_dir, kinds=("train",))
    images, labels = arrays["train_images"], arrays["train_labels"]
    train_idx, val_idx = split_indices(labels, limit)
    return Splits(images[train_idx], labels[train_idx], images[val_idx], labels[val_idx], source)


def load_test(data_dir=None) -> tuple[np.ndarray, np.ndarray, str]:
    """The 10,000 held-out test images (float32) and labels, never used in training."""
    arrays, source = load_raw(data_dir, kinds=("test",))
    return scale(arrays["test_images"]), arrays["test_labels"], source
