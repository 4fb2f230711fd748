"""The registered model as users call it, and where fmtrain is not installed: a real `mlflow
models serve` process in the environment MLflow builds from the model's own requirements, that
environment's Python, `mlflow models generate-dockerfile`, MLflow's Python API and `fmtrain
predict` on picture files; its input checked before it answers."""

from __future__ import annotations

import json
import os
import subprocess

import mlflow
import numpy as np
import pytest
from PIL import Image

from fmtrain.learning import data, images

from conftest import fmtrain_here, post_json, start_process, without_fmtrain

EXPECTED = "expected 28x28 grayscale images"


@pytest.fixture(scope="module")
def test_images(real_data_dir):
    arrays, _ = data.load_raw(real_data_dir, kinds=("test",))
    return arrays["test_images"], arrays["test_labels"]


def test_floats_and_0_255_integers_get_the_same_class_names_with_index_and_probabilities(
        model_server, test_images):
    pixels = test_images[0][:20]
    status, integers = post_json(f"{model_server.url}/invocations", {"inputs": pixels.tolist()})
    assert status == 200, integers
    status, floats = post_json(f"{model_server.url}/invocations", {"inputs": (pixels / 255.0).tolist()})
    assert status == 200, floats
    names = [answer["class_name"] for answer in integers["predictions"]]
    assert names == [answer["class_name"] for answer in floats["predictions"]]
    for answer in integers["predictions"]:
        assert set(answer) == {"class_name", "class_index", "probabilities"}
        assert len(answer["probabilities"]) == 10 and sum(answer["probabilities"]) == pytest.approx(1, abs=1e-4)
        assert answer["class_name"] == data.CLASS_NAMES[answer["class_index"]]
        assert answer["class_index"] == int(np.argmax(answer["probabilities"]))
    # A model trained for 3 epochs on 3,000 images knows most of these.
    right = sum(answer["class_index"] == label for answer, label in zip(integers["predictions"], test_images[1][:20], strict=True))
    assert right >= 12, right


def _with(value) -> list:
    """One 28x28 image of 0.5 with one pixel set to ``value`` (json writes NaN and Infinity)."""
    image = np.full((1, 28, 28), 0.5)
    image[0, 27, 27] = value
    return image.tolist()


@pytest.mark.parametrize("payload, problem", [
    ({"inputs": _with(np.nan)}, "NaN"),
    ({"inputs": _with(0.25)}, None),  # the valid twin of the others
    ({"inputs": _with(np.inf)}, "infinite"),
    ({"inputs": _with(-np.inf)}, "infinite"),
    ({"inputs": np.full((2, 28, 28), -1).tolist()}, "outside 0-255"),
    ({"inputs": np.full((2, 28, 28), 256).tolist()}, "outside 0-255"),
    ({"inputs": np.full((2, 28, 28), 1.5).tolist()}, "outside [0, 1]"),
    ({"inputs": np.zeros((2, 14, 14)).tolist()}, "shape (2, 14, 14)"),
    ({"inputs": np.zeros((3, 784)).tolist()}, "shape (3, 784)"),
    ({"inputs": [[[0.5] * 28] * 28, [[0.5] * 27] * 28]}, "unequal lengths"),
    ({"inputs": "a sneaker"}, "text"),
    ({"inputs": [[["white"] * 28] * 28]}, "text"),
], ids=["nan", "valid", "inf", "minus-inf", "minus-1", "256", "float-1.5", "shape-14x14", "flat-784", "ragged",
        "string", "strings"])
def test_a_bad_input_gets_http_400_with_one_short_line_naming_the_expected_input(model_server, payload, problem):
    status, answer = post_json(f"{model_server.url}/invocations", payload)
    if problem is None:
        assert status == 200 and len(answer["predictions"]) == 1
        return
    assert status == 400, answer
    message = answer["message"]
    assert len(message) < 300 and "\n" not in message, message
    assert message.startswith(EXPECTED) and problem in message, message


def test_a_thousand_images_in_one_request(model_server, test_images):
    status, answer = post_json(f"{model_server.url}/invocations", {"inputs": test_images[0][:1000].tolist()})
    assert status == 200 and len(answer["predictions"]) == 1000


def test_mlflow_loads_both_flavors_and_the_input_example_is_valid_for_serving(registered_model, test_images):
    from fmtrain.learning import backend

    backend.use()  # this process's Keras stays on TensorFlow: the model, saved on JAX, loads on it
    mlflow.set_tracking_uri(registered_model.tracking_uri)
    try:
        from mlflow.models import validate_serving_input
        from mlflow.models.utils import load_serving_example

        example = load_serving_example(registered_model.model_uri)
        checked = validate_serving_input(registered_model.model_uri, example)
        assert list(checked.columns) == ["class_name", "class_index", "probabilities"]
        pixels = test_images[0][:50]
        served = mlflow.pyfunc.load_model(registered_model.model_uri).predict(pixels)
        keras_model = mlflow.keras.load_model(registered_model.model_uri)
        direct = keras_model.predict(pixels.astype(np.float32) / 255.0, verbose=0)
        assert served["class_index"].tolist() == direct.argmax(axis=1).tolist()
        assert np.allclose(np.array(served["probabilities"].tolist()), direct, atol=1e-6)
        info = mlflow.models.get_model_info(registered_model.model_uri)
        assert {"keras", "python_function"} <= set(info.flavors)
        assert info.flavors["python_function"]["loader_module"] == "mlflow.pyfunc.loaders.code_model"
        assert info.signature.outputs.input_names() == ["class_name", "class_index", "probabilities"]
    finally:
        mlflow.set_tracking_uri(None)


def _pngs(pictures, folder) -> list[str]:
    paths = []
    for index, (pixels, invert) in enumerate(pictures):
        shown = 255 - pixels if invert else pixels
        path = folder / f"item-{index}{'-dark-on-light' if invert else ''}.png"
        Image.fromarray(shown).resize((100, 100), Image.Resampling.BILINEAR).save(path)
        paths.append(str(path))
    return paths


def test_fmtrain_predict_on_pictures_agrees_with_the_model_on_the_originals(registered_model, test_images,
                                                                           tmp_path):
    chosen = test_images[0][100:110]
    paths = _pngs([(pixels, index % 2 == 1) for index, pixels in enumerate(chosen)], tmp_path)
    np.save(tmp_path / "originals.npy", chosen)
    env = dict(os.environ, MLFLOW_TRACKING_URI=registered_model.tracking_uri)
    done = fmtrain_here(["predict", "--model_uri", registered_model.model_uri, *paths, tmp_path / "originals.npy"],
                        env=env, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 20, done.stdout
    # "PATH: Sneaker 0.912, Sandal 0.051, Ankle boot 0.020"
    top = [line.split(": ", 1)[1].split(", ") for line in lines]
    assert all(len(classes) == 3 for classes in top)
    first = [classes[0].rsplit(" ", 1)[0] for classes in top]
    pictures, originals = first[:10], first[10:]
    assert lines[10].startswith(f"{tmp_path / 'originals.npy'}[0]: ")
    agree = sum(a == b for a, b in zip(pictures, originals, strict=True))
    assert agree >= 9, list(zip(pictures, originals, strict=True))


def test_a_light_background_is_inverted_and_any_size_becomes_28x28(tmp_path):
    item = np.zeros((40, 20), dtype=np.uint8)
    item[5:35, 4:16] = 200  # a light item on black, taller than wide
    Image.fromarray(item).save(tmp_path / "dark.png")
    Image.fromarray(255 - item).convert("RGB").save(tmp_path / "light.jpg", quality=95)
    dark, light = images.picture(tmp_path / "dark.png"), images.picture(tmp_path / "light.jpg")
    assert dark.shape == light.shape == (28, 28) and dark.dtype == np.uint8
    assert dark[0].max() < 10 and light[0].max() < 20  # both dark around the item
    assert np.abs(dark.astype(int) - light.astype(int)).mean() < 5
    assert dark[:, :6].max() == 0  # fitted in proportion: padded left and right


@pytest.mark.parametrize("values, problem", [
    (np.full((28, 28), 255, dtype=np.uint8), None),
    (np.zeros((1, 28, 28), dtype=bool), "true/false"),
    (np.zeros((0, 28, 28)), "shape (0, 28, 28)"),
    (np.full((1, 28, 28), -0.1), "outside [0, 1]"),
])
def test_the_input_rules_on_arrays(values, problem):
    if problem is None:
        converted = images.as_model_input(values)
        assert converted.shape == (1, 28, 28) and converted.dtype == np.float32 and converted.max() == 1.0
        return
    with pytest.raises(images.ImageInputError, match="expected 28x28") as caught:
        images.as_model_input(values)
    assert problem in str(caught.value)


def test_fmtrain_predict_names_a_file_it_cannot_read(registered_model, tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    env = dict(os.environ, MLFLOW_TRACKING_URI=registered_model.tracking_uri)
    done = fmtrain_here(["predict", "--model_uri", registered_model.model_uri, tmp_path / "notes.png"], env=env)
    assert done.returncode == 2
    assert done.stderr.strip() == f"fmtrain: error: {tmp_path / 'notes.png'}: not a picture file (PNG or JPEG)"


def test_a_model_registered_by_an_earlier_fmtrain_still_predicts_and_evaluates(store, tiny_data_dir, tmp_path,
                                                                               capsys):
    """Earlier versions logged the Keras flavor alone (its python_function flavor is mlflow.keras's,
    which answers bare probabilities): `fmtrain predict` and `evaluate` read it as before."""
    from mlflow.models import infer_signature

    from fmtrain.cli.app import main
    from fmtrain.learning import backend, configs, model

    backend.use()
    keras_model = model.build_model(configs.DEFAULT)
    example = np.zeros((2, 28, 28), dtype=np.float32)
    mlflow.set_experiment("fashion-mnist")
    with mlflow.start_run():
        info = mlflow.keras.log_model(keras_model, name="early-stopping",
                                      signature=infer_signature(example, keras_model.predict(example, verbose=0)))
    mlflow.register_model(info.model_uri, "older")
    pixels = data.load_raw(tiny_data_dir, kinds=("test",))[0]["test_images"][:3]
    np.save(tmp_path / "three.npy", pixels)
    capsys.readouterr()
    assert main(["predict", "--model_uri", "models:/older/1", str(tmp_path / "three.npy")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    expected = keras_model.predict(pixels.astype(np.float32) / 255.0, verbose=0)
    assert [line.split(": ", 1)[1].split(", ")[0].rsplit(" ", 1)[0] for line in lines] == [
        data.CLASS_NAMES[i] for i in expected.argmax(axis=1)]
    assert main(["evaluate", "--model_uri", "models:/older/1", "--data_dir", str(tiny_data_dir),
                 "--system_metrics", "0"]) == 0


class Fmtrain02Flavor:
    """How fmtrain 0.2 logged its models: the Keras flavor, whose python_function flavor names
    fmtrain.tracking.serving as its loader."""

    @staticmethod
    def save_model(path, mlflow_model, keras_model, **kwargs):
        from pathlib import Path

        Path(path).mkdir(parents=True, exist_ok=True)
        mlflow.keras.save_model(keras_model, path, mlflow_model=mlflow_model, **kwargs)
        mlflow_model.flavors["python_function"]["loader_module"] = "fmtrain.tracking.serving"
        mlflow_model.save(str(Path(path) / "MLmodel"))


def test_a_model_logged_by_fmtrain_0_2_loads_through_fmtrain_with_its_checked_input(store):
    from mlflow.models import Model

    from fmtrain.learning import backend, configs, model

    backend.use()
    keras_model = model.build_model(configs.DEFAULT)
    mlflow.set_experiment("fashion-mnist")
    with mlflow.start_run():
        info = Model.log(None, name="early-stopping", flavor=Fmtrain02Flavor, keras_model=keras_model,
                         pip_requirements=["keras"])
    loaded = mlflow.pyfunc.load_model(info.model_uri)
    pixels = np.random.default_rng(0).integers(0, 256, (3, 28, 28))
    answer = loaded.predict(pixels)
    expected = keras_model.predict(pixels.astype(np.float32) / 255.0, verbose=0)
    assert answer["class_index"].tolist() == expected.argmax(axis=1).tolist()
    assert answer["class_name"].tolist() == [data.CLASS_NAMES[i] for i in expected.argmax(axis=1)]
    with pytest.raises(mlflow.exceptions.MlflowException) as refused:
        loaded.predict(np.full((1, 28, 28), 300))
    assert refused.value.message.startswith(EXPECTED) and "outside 0-255" in refused.value.message


def test_the_run_chose_mlflows_experiment_and_the_model_requires_keras_and_its_backend_not_fmtrain(
        registered_model):
    client = mlflow.MlflowClient(registered_model.tracking_uri)
    run = client.get_run(registered_model.run_id)
    assert client.get_experiment(run.info.experiment_id).name == registered_model.experiment == "chapter"
    mlflow.set_tracking_uri(registered_model.tracking_uri)
    try:
        requirements = open(mlflow.pyfunc.get_model_dependencies(registered_model.model_uri)).read().split()
    finally:
        mlflow.set_tracking_uri(None)
    assert {r.split("==")[0] for r in requirements} == {"mlflow", "keras", "jax", "jaxlib", "numpy", "pandas"}
    assert not [r for r in requirements if "fmtrain" in r]


# Loads a model by URI and prints, as JSON, whether fmtrain can be imported here, the Keras
# backend, whether TensorFlow was imported, and the probabilities for the images of a .npy.
PROBE = """
import importlib.util, json, sys
import mlflow, numpy as np
answer = mlflow.pyfunc.load_model(sys.argv[1]).predict(np.load(sys.argv[2]))
import keras
print(json.dumps({"fmtrain": importlib.util.find_spec("fmtrain") is not None, "backend": keras.backend.backend(),
                  "tensorflow": "tensorflow" in sys.modules, "probabilities": answer["probabilities"].tolist()}))
"""


def test_the_model_predicts_as_in_fmtrains_environment_in_an_environment_of_its_own_requirements(
        model_server, registered_model, test_images, tmp_path):
    """The environment MLflow built to serve the model (uv, from the model's requirements): a
    Python without fmtrain, and with no KERAS_BACKEND set; its answer is the one this process,
    where fmtrain runs (on TensorFlow), gets."""
    from fmtrain.learning import backend

    (tmp_path / "probe.py").write_text(PROBE)
    pixels = test_images[0][:20]
    np.save(tmp_path / "images.npy", pixels)
    env = dict(without_fmtrain(os.environ), MLFLOW_TRACKING_URI=registered_model.tracking_uri)
    probe = start_process([model_server.python, tmp_path / "probe.py", registered_model.model_uri,
                           tmp_path / "images.npy"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                          stderr=subprocess.PIPE, text=True)
    out, err = probe.communicate(timeout=300)
    assert probe.returncode == 0, err[-3000:]
    found = json.loads(out.strip().splitlines()[-1])
    assert found["fmtrain"] is False and found["backend"] == "jax" and found["tensorflow"] is False
    backend.use()
    mlflow.set_tracking_uri(registered_model.tracking_uri)
    try:
        here = mlflow.pyfunc.load_model(registered_model.model_uri).predict(pixels)
    finally:
        mlflow.set_tracking_uri(None)
    # The same weights on two backends: the same classes, probabilities equal to float32 rounding.
    np.testing.assert_allclose(found["probabilities"], np.array(here["probabilities"].tolist()), rtol=1e-4,
                               atol=1e-6)
    assert np.argmax(found["probabilities"], axis=1).tolist() == here["class_index"].tolist()


def test_mlflow_generates_a_dockerfile_for_the_model(registered_model, tmp_path):
    env = dict(without_fmtrain(os.environ), MLFLOW_TRACKING_URI=registered_model.tracking_uri)
    done = start_process(["mlflow", "models", "generate-dockerfile", "-m", registered_model.model_uri,
                          "-d", tmp_path / "image"], env=env, cwd=tmp_path, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    out, err = done.communicate(timeout=300)
    assert done.returncode == 0, err[-3000:]
    dockerfile = (tmp_path / "image" / "Dockerfile").read_text()
    assert "COPY model_dir /opt/ml/model" in dockerfile and "fmtrain" not in dockerfile
    model = tmp_path / "image" / "model_dir"
    assert (model / "served_model.py").exists() and (model / "code" / "served_input.py").exists()
    assert "fmtrain" not in (model / "requirements.txt").read_text()
