import keras
import pytest

from fmtrain.learning import configs
from fmtrain.learning.model import build_callbacks, build_model, build_optimizer


def test_model_is_the_chapters_model_fn():
    plain = build_model(configs.resolve("rmsprop-5"))
    assert [type(layer).__name__ for layer in plain.layers] == ["Flatten", "Dense", "Dense"]
    assert plain.input_shape == (None, 28, 28) and plain.output_shape == (None, 10)
    assert plain.count_params() == 784 * 100 + 100 + 100 * 10 + 10
    assert plain.layers[1].activation.__name__ == "relu" and plain.layers[2].activation.__name__ == "softmax"
    dropout = build_model(configs.resolve("dropout", {"dropout_rate": "0.4"}))
    assert [type(layer).__name__ for layer in dropout.layers] == ["Flatten", "Dense", "Dropout", "Dense"]
    assert dropout.layers[2].rate == 0.4
    assert isinstance(plain.optimizer, keras.optimizers.RMSprop) and isinstance(dropout.optimizer, keras.optimizers.Adam)


def test_optimizer_by_name_with_optional_learning_rate():
    assert float(build_optimizer("sgd").learning_rate) == pytest.approx(0.01)
    assert float(build_optimizer("adam", 0.005).learning_rate) == pytest.approx(0.005)
    with pytest.raises(ValueError, match="unknown optimizer 'lion'"):
        build_optimizer("lion")


def test_callbacks_follow_the_configuration(tmp_path):
    (nan_guard,) = build_callbacks(configs.resolve("adam"))
    assert isinstance(nan_guard, keras.callbacks.TerminateOnNaN)
    _, checkpoint, early = build_callbacks(configs.resolve("early-stopping"), str(tmp_path / "best.keras"))
    assert isinstance(checkpoint, keras.callbacks.ModelCheckpoint) and checkpoint.save_best_only
    assert isinstance(early, keras.callbacks.EarlyStopping)
    assert (early.patience, early.restore_best_weights, early.monitor) == (2, True, "val_loss")
    assert not any((tmp_path).iterdir())  # builders write nothing
