import gzip

import numpy as np
import pytest
from sklearn.model_selection import train_test_split

from fmtrain.learning import data
from fmtrain.learning.data import DataError

from conftest import make_dataset, write_idx


def test_read_idx_round_trips_compressed_and_plain(tmp_path):
    images = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "a.gz", images)), images)
    assert np.array_equal(data.read_idx(write_idx(tmp_path / "a", images, compress=False)), images)


def test_truncated_gzip_names_the_file(tmp_path):
    path = write_idx(tmp_path / "train-images-idx3-ubyte.gz", np.zeros((50, 28, 28), np.uint8))
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz: cannot be read .*truncated or corrupt"):
        data.read_idx(path)


def test_wrong_size_and_bad_magic_are_reported(tmp_path):
    good = write_idx(tmp_path / "x", np.zeros((3, 28, 28), np.uint8), compress=False)
    short = tmp_path / "short"
    short.write_bytes(good.read_bytes()[:-10])
    with pytest.raises(DataError, match="short: holds 2342 data bytes but its header"):
        data.read_idx(short)
    junk = tmp_path / "junk.gz"
    junk.write_bytes(gzip.compress(b"<html>not found</html>"))
    with pytest.raises(DataError, match="junk.gz: not an IDX file"):
        data.read_idx(junk)


def test_missing_directory_and_missing_file(tmp_path, monkeypatch):
    with pytest.raises(DataError, match="nowhere: data directory not found"):
        data.load_raw(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: file not found"):
        data.load_raw(tmp_path / "empty")


def test_source_order_explicit_then_environment_then_debian(tmp_path, monkeypatch):
    explicit, from_env = make_dataset(tmp_path / "a", 20, 10), make_dataset(tmp_path / "b", 20, 10)
    monkeypatch.setenv(data.ENV_VAR, str(from_env))
    assert data.locate(explicit) == explicit
    assert data.locate() == from_env
    monkeypatch.delenv(data.ENV_VAR)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "a")
    assert data.locate() == explicit
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "absent")
    assert data.locate() is None  # then Keras's downloading loader is used


def test_split_matches_the_chapters_train_test_split():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, size=(500, 28, 28)).astype(np.uint8)
    labels = (np.arange(500) % 10).astype(np.uint8)
    chapter = train_test_split(images / 255.0, labels, test_size=0.2, random_state=42)
    train_idx, val_idx = data.split_indices(labels)
    assert np.array_equal(data.scale(images[train_idx]), chapter[0].astype(np.float32))
    assert np.array_equal(data.scale(images[val_idx]), chapter[1].astype(np.float32))
    assert np.array_equal(labels[val_idx], chapter[3])
    assert data.scale(images).dtype == np.float32


@pytest.mark.parametrize("count", [60000, 501, 37])
def test_the_split_without_scikit_learn_is_scikit_learns(count):
    expected = train_test_split(np.arange(count), test_size=0.2, random_state=42)
    train_idx, val_idx = data.chapter_split(count)
    assert np.array_equal(train_idx, expected[0]) and np.array_equal(val_idx, expected[1])


def test_limit_is_a_stratified_subset_in_the_same_proportion():
    labels = (np.arange(60000) % 10).astype(np.uint8)
    train_idx, val_idx = data.split_indices(labels, limit=2000)
    assert (len(train_idx), len(val_idx)) == (2000, 500)
    full_train, full_val = data.split_indices(labels)
    share = np.bincount(labels[full_train]) / len(full_train)  # each class's share in the split
    assert np.all(np.abs(np.bincount(labels[train_idx]) - 2000 * share) <= 1)
    assert set(train_idx) <= set(full_train) and set(val_idx) <= set(full_val)


def test_real_data_has_the_chapters_shapes(real_data_dir):
    splits = data.load_splits(real_data_dir)
    assert splits.x_train.shape == (48000, 28, 28) and splits.x_val.shape == (12000, 28, 28)
    assert splits.x_train.dtype == np.uint8 and data.scale(splits.x_val).max() == 1.0
    images, labels, _ = data.load_test(real_data_dir)
    assert images.shape == (10000, 28, 28) and np.bincount(labels).tolist() == [1000] * 10


def test_offline_download_failure_is_one_line(monkeypatch, tmp_path):
    import keras

    def offline():
        raise Exception("URL fetch failure on https://example: None -- [Errno -3] Temporary failure")

    monkeypatch.delenv(data.ENV_VAR, raising=False)
    monkeypatch.setattr(data, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(keras.datasets.fashion_mnist, "load_data", offline)
    with pytest.raises(DataError, match="Keras could not download them .*install the Debian package"):
        data.load_splits()


def test_training_needs_only_the_training_files(tmp_path):
    directory = make_dataset(tmp_path / "d", 100, 10)
    (directory / "t10k-images-idx3-ubyte.gz").unlink()
    assert len(data.load_splits(directory).y_train) == 80
