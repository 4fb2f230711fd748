"""Register, reload in a fresh process, evaluate on the test set, and serve over HTTP."""

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request

import keras
import numpy as np
import pytest
from mlflow.tracking import MlflowClient

from fmtrain.cli.app import main
from fmtrain.learning import data

from conftest import PROJECT, all_runs, post_json, run_fmtrain


@pytest.fixture
def two_versions(store, real_data_dir, capsys):
    """Two tiny runs registered as fm v1 and v2; the alias champion moved from v1 to v2."""
    for config, epochs in (("adam", "1"), ("dropout", "2")):
        assert main(["train", "--config", config, "--limit", "600", "--epochs", epochs,
                     "--data_dir", str(real_data_dir), "--quiet"]) == 0
    first, second = sorted(all_runs(), key=lambda r: r.info.start_time)
    client = MlflowClient()
    assert main(["register", first.info.run_id, "--name", "fm", "--alias", "champion"]) == 0
    assert str(client.get_model_version_by_alias("fm", "champion").version) == "1"
    assert main(["register", second.info.run_id, "--name", "fm", "--alias", "champion"]) == 0
    assert "as fm version 2 with alias champion" in capsys.readouterr().out
    champion = client.get_model_version_by_alias("fm", "champion")
    assert str(champion.version) == "2" and champion.run_id == second.info.run_id
    return first, second


def evaluate_in_fresh_process(uri, store, data_dir, cwd):
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    done = run_fmtrain(["evaluate", "--model-uri", uri, "--data-dir", str(data_dir)], env=env, cwd=cwd, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def test_evaluate_by_alias_and_by_version(two_versions, store, real_data_dir, tmp_path, capsys):
    first, second = two_versions
    assert main(["evaluate", "--model_uri", "models:/fm@nope"]) == 2
    assert main(["evaluate", "--model_uri", "models:/fm/7"]) == 2
    out = evaluate_in_fresh_process("models:/fm@champion", store, real_data_dir, tmp_path)
    err = capsys.readouterr().err
    assert "registered model 'fm' has no alias 'nope'; aliases: champion (v2)" in err
    assert "registered model 'fm' has no version 7; latest is 2" in err
    assert "(fm version 2) on 10000 test images" in out
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    env.pop("MLFLOW_EXPERIMENT_ID", None)  # set by the in-process runs above; the name decides here
    done = subprocess.run(["mlflow", "run", str(PROJECT), "-e", "evaluate", "--env-manager", "local",
                           "--experiment-name", "fashion-mnist", "-P", "model_uri=models:/fm/1",
                           "-P", f"data_dir={real_data_dir}"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    evaluations = [r for r in all_runs() if "model_uri" in r.data.params]
    by_uri = {r.data.params["model_uri"]: r for r in evaluations}
    assert by_uri["models:/fm@champion"].data.params["model_version"] == "2"
    assert by_uri["models:/fm/1"].data.params["model_version"] == "1"
    assert by_uri["models:/fm/1"].data.params["source_run_id"] == first.info.run_id

    # An independent computation: the run's own .keras file, the raw test files, numpy.
    client = MlflowClient()
    model = keras.models.load_model(client.download_artifacts(second.info.run_id, "model-whole.keras", str(tmp_path)))
    images = data.read_idx(real_data_dir / "t10k-images-idx3-ubyte.gz") / 255.0
    labels = data.read_idx(real_data_dir / "t10k-labels-idx1-ubyte.gz")
    probabilities = model.predict(images, verbose=0)
    logged = by_uri["models:/fm@champion"].data.metrics
    assert logged["test_accuracy"] == pytest.approx(np.mean(probabilities.argmax(1) == labels), abs=1e-4)
    loss = -np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], 1e-15, 1)))
    assert logged["test_loss"] == pytest.approx(loss, rel=1e-3)
    assert 0 < logged["test_macro_f1"] <= 1 and logged["test_size"] == 10000
    artifacts = {a.path for a in client.list_artifacts(by_uri["models:/fm@champion"].info.run_id)}
    assert {"per-class-metrics.csv", "confusion-matrix.png", "misclassified.png"} <= artifacts


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_registered_model_is_served_over_http(two_versions, store, real_data_dir, tmp_path):
    port = _free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    server = subprocess.Popen(["mlflow", "models", "serve", "-m", "models:/fm@champion", "--env-manager",
                               "local", "-h", "127.0.0.1", "-p", str(port)], env=env, cwd=tmp_path,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while True:  # poll until the server answers
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=5) as response:
                    if response.status == 200:
                        break
            except OSError:
                assert server.poll() is None, server.stderr.read()[-3000:]
                assert time.monotonic() < deadline, "the model server did not start in 180 s"
                time.sleep(1)
        images, labels, _ = data.load_test(real_data_dir)
        status, answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": images[:5].tolist()})
        assert status == 200
        # Each image's answer names its class beside the ten probabilities (tests/test_serving.py).
        served = np.array([prediction["probabilities"] for prediction in answer["predictions"]])
        assert served.shape == (5, 10)
        assert [p["class_index"] for p in answer["predictions"]] == served.argmax(axis=1).tolist()
        _, second = two_versions
        local = keras.models.load_model(MlflowClient().download_artifacts(
            second.info.run_id, "model-whole.keras", str(tmp_path))).predict(images[:5], verbose=0)
        np.testing.assert_allclose(served, local, rtol=1e-5, atol=1e-6)
        status, answer = post_json(f"http://127.0.0.1:{port}/invocations", {"inputs": images[:2, :27].tolist()})
        assert status == 400 and "shape" in answer["message"].lower()
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=60)
