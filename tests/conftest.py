"""Shared fixtures: a temporary tracking store, tiny IDX files, and the real data's location."""

from __future__ import annotations

import gzip
import os
import sys
from pathlib import Path

import numpy as np
import pytest

REAL_DATA = Path(os.environ.get("FMTRAIN_TEST_DATA_DIR", "/usr/share/datasets/fashion-mnist"))
PROJECT = Path(__file__).resolve().parent.parent
# The tests start `fmtrain` and `mlflow` as a user would: from the environment running pytest,
# activated or not.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


def write_idx(path: Path, array: np.ndarray, compress: bool = True) -> Path:
    """Write ``array`` (uint8) as an IDX file, the format of the four Fashion-MNIST files."""
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
        int(n).to_bytes(4, "big") for n in array.shape)
    payload = header + np.ascontiguousarray(array, dtype=np.uint8).tobytes()
    if compress:
        path.write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)
    return path


def make_dataset(directory: Path, n_train: int = 600, n_test: int = 100, seed: int = 0) -> Path:
    """Four IDX files of a small learnable synthetic set: each class lights its own band."""
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    for prefix, count in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(count) % 10
        rng.shuffle(labels)
        images = rng.integers(0, 60, size=(count, 28, 28))
        for index, label in enumerate(labels):
            images[index, 2 * label: 2 * label + 3, :] += 180
        write_idx(directory / f"{prefix}-images-idx3-ubyte.gz", images.clip(0, 255).astype(np.uint8))
        write_idx(directory / f"{prefix}-labels-idx1-ubyte.gz", labels.astype(np.uint8))
    return directory


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("tiny-fashion"))


@pytest.fixture(scope="session")
def real_data_dir() -> Path:
    """The real Fashion-MNIST files; CI installs them with the Debian package."""
    missing = [p for p in ("train-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz")
               if not (REAL_DATA / p).exists()]
    assert not missing, (f"{REAL_DATA} lacks {missing}: install the Debian package "
                         "dataset-fashion-mnist or set FMTRAIN_TEST_DATA_DIR")
    return REAL_DATA


@pytest.fixture
def store(tmp_path, monkeypatch) -> str:
    """A fresh sqlite tracking store in a temporary folder, also the working directory."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    for name in ("MLFLOW_RUN_ID", "MLFLOW_EXPERIMENT_ID", "MLFLOW_EXPERIMENT_NAME", "FMTRAIN_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)
    import mlflow

    mlflow.set_tracking_uri(uri)
    yield uri
    while mlflow.active_run():
        mlflow.end_run()
    mlflow.set_tracking_uri(None)


def all_runs(experiment: str = "fashion-mnist"):
    import mlflow

    return mlflow.search_runs(experiment_names=[experiment], output_format="list")
