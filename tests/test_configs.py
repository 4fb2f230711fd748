import dataclasses

import pytest

from fmtrain.learning import configs
from fmtrain.learning.configs import DEFAULT, TrainConfig


def test_default_is_the_chapters_final_model():
    assert configs.resolve() == DEFAULT == configs.resolve("early-stopping")
    assert (DEFAULT.optimizer, DEFAULT.dropout_rate, DEFAULT.patience, DEFAULT.epochs) == ("adam", 0.3, 2, 20)
    assert DEFAULT.checkpoint and DEFAULT.validation and DEFAULT.batch_size == 32


@pytest.mark.parametrize("name, expected", [
    ("rmsprop-5", dict(optimizer="rmsprop", epochs=5, validation=False, dropout_rate=0.0, patience=None)),
    ("rmsprop-20", dict(optimizer="rmsprop", epochs=20, validation=False)),
    ("rmsprop-val", dict(optimizer="rmsprop", epochs=20, validation=True, checkpoint=False)),
    ("adam", dict(optimizer="adam", dropout_rate=0.0, validation=True, patience=None)),
    ("dropout", dict(optimizer="adam", dropout_rate=0.3, patience=None, checkpoint=False)),
    ("save-restore", dict(dropout_rate=0.3, epochs=10, patience=None)),
    ("checkpoint", dict(checkpoint=True, patience=None, epochs=20)),
    ("early-stopping", dict(checkpoint=True, patience=2)),
])
def test_each_configuration_reproduces_its_chapter_step(name, expected):
    config = configs.resolve(name)
    assert {k: getattr(config, k) for k in expected} == expected
    assert set(configs.changed_fields(name)) <= set(configs.CONFIGS[name][1])


def test_chapter_order_and_names():
    assert list(configs.CONFIGS) == ["rmsprop-5", "rmsprop-20", "rmsprop-val", "adam", "dropout",
                                     "save-restore", "checkpoint", "early-stopping"]


def test_overrides_given_as_text_take_the_fields_type():
    config = configs.resolve("dropout", {"epochs": "3", "learning_rate": "0.01", "dropout_rate": "0.5",
                                         "patience": "1", "validation": "true", "limit": "2000.0"})
    assert (config.epochs, config.learning_rate, config.dropout_rate, config.patience, config.limit) == \
        (3, 0.01, 0.5, 1, 2000)
    assert configs.resolve("early-stopping", {"patience": "none"}).patience is None


@pytest.mark.parametrize("overrides, message", [
    ({"dropout_rate": "1.0"}, "dropout_rate must be in [0, 1)"),
    ({"dropout_rate": "-0.1"}, "dropout_rate must be in [0, 1)"),
    ({"epochs": "0"}, "epochs must be at least 1"),
    ({"epochs": "abc"}, "epochs must be a whole number, got 'abc'"),
    ({"epochs": "2.5"}, "epochs must be a whole number"),
    ({"learning_rate": "fast"}, "learning_rate must be a number"),
    ({"optimizer": "adagrad"}, "unknown optimizer 'adagrad'; choose one of: rmsprop, adam, sgd"),
    ({"validation": "maybe"}, "validation must be true or false"),
    ({"dropout": "0.3"}, "unknown setting 'dropout'; valid settings: epochs, optimizer"),
    ({"limit": "5"}, "limit must be 0 (all data) or at least 40"),
])
def test_bad_overrides_are_refused_with_a_message(overrides, message):
    with pytest.raises(ValueError) as error:
        configs.resolve("early-stopping", overrides)
    assert message in str(error.value)


def test_unknown_configuration_lists_the_valid_ones():
    with pytest.raises(ValueError, match="unknown configuration 'adamw'; choose one of: rmsprop-5, "):
        configs.resolve("adamw")


def test_callbacks_that_watch_val_loss_need_validation():
    with pytest.raises(ValueError, match="early stopping .* needs validation=true"):
        configs.resolve("rmsprop-5", {"patience": "2"})
    with pytest.raises(ValueError, match="checkpoint needs validation=true"):
        configs.resolve("rmsprop-20", {"checkpoint": "true"})


def test_params_use_the_field_names_and_stable_text():
    params = configs.resolve("rmsprop-5").to_params()
    assert list(params) == [f.name for f in dataclasses.fields(TrainConfig)]
    assert params["patience"] == "none" and params["validation"] == "false" and params["epochs"] == "5"
    for key, text in params.items():  # what is logged parses back to the same value
        assert configs.parse_value(key, text) == getattr(configs.resolve("rmsprop-5"), key)


def test_configuration_is_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        DEFAULT.epochs = 3
