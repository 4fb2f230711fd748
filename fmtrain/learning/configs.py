"""The chapter's experiments as data: one frozen default and named diffs of it.

Every knob has one name everywhere: the dataclass field, the CLI option (``--dropout_rate``,
``--dropout-rate`` also accepted), the MLproject parameter and the MLflow param.
This module imports neither TensorFlow nor MLflow, so ``fmtrain --help`` stays fast.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

from fmtrain.learning.backend import BACKENDS, DEFAULT_BACKEND

OPTIMIZERS = ("rmsprop", "adam", "sgd")
# "seeded": fmtrain's order, a permutation per (seed, epoch), the same on every backend (see
# learning/batches.py); "keras": fit(shuffle=True), whatever the backend does with it.
BATCH_ORDERS = ("seeded", "keras")
# The validation subset keeps the chapter's 1:4 proportion, and must hold all 10 classes.
MIN_LIMIT = 40
# Keras (and NumPy's legacy seeding) take seeds in [0, 2**32 - 1].
MAX_SEED = 2**32 - 1


def _knob(default, help_text):
    return field(default=default, metadata={"help": help_text})


@dataclass(frozen=True)
class TrainConfig:
    """One training experiment. The defaults are the chapter's final model (``early-stopping``)."""

    epochs: int = _knob(20, "maximum number of epochs")
    optimizer: str = _knob("adam", "optimizer name: " + ", ".join(OPTIMIZERS))
    learning_rate: float | None = _knob(None, "learning rate; none = the optimizer's Keras default")
    units: int = _knob(100, "width of the hidden Dense(relu) layer (the chapter's is 100)")
    dropout_rate: float = _knob(0.3, "rate of the Dropout layer after the hidden layer; 0 = no Dropout")
    patience: int | None = _knob(2, "EarlyStopping patience (restore_best_weights=True); none = no early stopping")
    validation: bool = _knob(True, "pass the validation split to fit() (val_loss per epoch)")
    checkpoint: bool = _knob(True, "ModelCheckpoint(save_best_only=True) to best-model.keras")
    batch_size: int = _knob(32, "mini-batch size (the chapter uses Keras's default, 32)")
    seed: int = _knob(42, "seed for weights initialisation, shuffling and dropout")
    limit: int = _knob(0, "train on a stratified subset of this many images; 0 = all 48,000")
    # 500 measured about 20% faster per epoch than 100 on JAX, and the same on TensorFlow.
    steps_per_execution: int = _knob(
        500, "training steps per compiled call; changes speed, not the mathematics (1 = plain Keras)")
    batch_order: str = _knob("seeded", "order of the training batches: seeded (a new permutation each "
                                       "epoch, drawn from seed and epoch, the same on every backend) or "
                                       "keras (fit's own shuffle=True, for comparison)")
    backend: str = _knob(DEFAULT_BACKEND, "Keras backend: tensorflow (the chapter's) or jax "
                                          "(faster on a CPU; pip install '.[jax]' in fmtrain's checkout)")
    # MLflow's default interval is 10 s; 2 s gives a short run a curve, at a cost within the
    # noise of a full-data run (docs/serving.md measures it).
    system_metrics: float = _knob(2.0, "seconds between samples of the machine's CPU, memory, disk, "
                                       "network (and NVIDIA GPU) use, logged as system/* metrics; 0 = none")

    def __post_init__(self):
        _check(self.epochs >= 1, f"epochs must be at least 1, got {self.epochs}")
        _check(self.optimizer in OPTIMIZERS,
               f"unknown optimizer {self.optimizer!r}; choose one of: {', '.join(OPTIMIZERS)}")
        _check(self.learning_rate is None or (math.isfinite(self.learning_rate) and self.learning_rate > 0),
               f"learning_rate must be a positive finite number, got {self.learning_rate}")
        _check(self.units >= 1, f"units must be at least 1, got {self.units}")
        _check(0 <= self.dropout_rate < 1, f"dropout_rate must be in [0, 1), got {self.dropout_rate}")
        _check(self.patience is None or self.patience >= 0,
               f"patience must be 0 or more (or none), got {self.patience}")
        _check(self.patience is None or self.validation,
               "early stopping (patience) needs validation=true: it watches val_loss")
        _check(not self.checkpoint or self.validation,
               "checkpoint needs validation=true: it keeps the lowest val_loss")
        _check(self.batch_size >= 1, f"batch_size must be at least 1, got {self.batch_size}")
        _check(0 <= self.seed <= MAX_SEED, f"seed must be in [0, {MAX_SEED}], got {self.seed}")
        _check(self.limit == 0 or self.limit >= MIN_LIMIT,
               f"limit must be 0 (all data) or at least {MIN_LIMIT} (every class in both splits), "
               f"got {self.limit}")
        _check(self.steps_per_execution >= 1,
               f"steps_per_execution must be at least 1, got {self.steps_per_execution}")
        _check(math.isfinite(self.system_metrics) and self.system_metrics >= 0,
               f"system_metrics must be 0 (none) or a number of seconds, got {self.system_metrics}")
        _check(self.batch_order in BATCH_ORDERS,
               f"unknown batch_order {self.batch_order!r}; choose one of: {', '.join(BATCH_ORDERS)}")
        _check(self.backend in BACKENDS,
               f"unknown backend {self.backend!r}; choose one of: {', '.join(BACKENDS)}")

    def to_params(self) -> dict[str, str]:
        """The configuration as MLflow params: every field, with its value as text."""
        return {f.name: format_value(getattr(self, f.name)) for f in dataclasses.fields(self)}


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ValueError(message)


DEFAULT = TrainConfig()
_PLAIN = dict(optimizer="rmsprop", dropout_rate=0.0, patience=None, checkpoint=False)

# Each configuration is the chapter step it reproduces and the fields it changes from the
# default, in the chapter's order.
CONFIGS: dict[str, tuple[str, dict]] = {
    # The first loss curve: 5 epochs of RMSprop, History only.
    "rmsprop-5": ("loss curve from History", dict(_PLAIN, epochs=5, validation=False)),
    # The same curve over 20 epochs: train loss keeps falling.
    "rmsprop-20": ("the longer loss curve", dict(_PLAIN, validation=False)),
    # With validation data: val_loss turns up while train loss falls (overfitting).
    "rmsprop-val": ("validation loss (the overfitting curve)", dict(_PLAIN)),
    # Adam instead of RMSprop: a flatter validation curve.
    "adam": ("RMSprop vs Adam", dict(_PLAIN, optimizer="adam")),
    # Dropout(0.3) after the hidden layer narrows the train/validation gap.
    "dropout": ("Dropout(0.3)", dict(patience=None, checkpoint=False)),
    # 10 epochs, then save() / save_weights() and both reloads checked with argmax.
    "save-restore": ("save() / save_weights() / load_weights() / load_model()",
                     dict(epochs=10, patience=None, checkpoint=False)),
    # Keep the best epoch's model on disk.
    "checkpoint": ("ModelCheckpoint(save_best_only=True)", dict(patience=None)),
    # The chapter's final model: stop two epochs after the best and restore it.
    "early-stopping": ("EarlyStopping(patience=2, restore_best_weights=True)", dict()),
}
DEFAULT_CONFIG = "early-stopping"


def format_value(value) -> str:
    """Text for a field value, the same in MLflow params, CLI help and tables."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_value(name: str, text) -> object:
    """Turn an override given as text (CLI, MLproject) into the field's type; ValueError if not."""
    kinds = {f.name: f.type for f in dataclasses.fields(TrainConfig)}
    if name not in kinds:
        raise ValueError(f"unknown setting {name!r}; valid settings: {', '.join(kinds)}")
    if not isinstance(text, str):  # a typed value is checked the same way as its text
        text = format_value(text)
    kind = kinds[name]
    raw = text.strip()
    if "None" in kind and raw.lower() in ("none", ""):
        return None
    try:
        if kind.startswith("int"):
            number = float(raw)
            if not number.is_integer():
                raise ValueError
            return int(number)
        if kind.startswith("float"):
            return float(raw)
        if kind == "bool":
            return {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}[raw.lower()]
    except (ValueError, KeyError):
        expected = {"bool": "true or false"}.get(kind, "a whole number" if kind.startswith("int") else "a number")
        raise ValueError(f"{name} must be {expected}, got {text!r}") from None
    return raw


def resolve(name: str = DEFAULT_CONFIG, overrides: dict | None = None) -> TrainConfig:
    """The named configuration with ``overrides`` (field name -> value or text) applied.

    Raises ValueError naming the valid choices for an unknown configuration or setting.
    """
    if name not in CONFIGS:
        raise ValueError(f"unknown configuration {name!r}; choose one of: {', '.join(CONFIGS)}")
    changes = dict(CONFIGS[name][1])
    for key, value in (overrides or {}).items():
        changes[key] = parse_value(key, value)
    return dataclasses.replace(DEFAULT, **changes)


def changed_fields(name: str) -> dict:
    """What the named configuration changes from the default, for ``fmtrain configs``."""
    config = resolve(name)
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(TrainConfig)
            if getattr(config, f.name) != getattr(DEFAULT, f.name)}


def knobs() -> list[dataclasses.Field]:
    """The fields of TrainConfig, for building CLI options from one source."""
    return list(dataclasses.fields(TrainConfig))


def knob(name: str) -> dataclasses.Field:
    """The field of TrainConfig named ``name``; ValueError naming the settings when there is none."""
    for field_ in knobs():
        if field_.name == name:
            return field_
    raise ValueError(f"unknown setting {name!r}; valid settings: {', '.join(k.name for k in knobs())}")


def parse_seeds(text: str | None, base: int = DEFAULT.seed) -> list[int]:
    """``--seeds``: a count N (seeds base, base+1, ... base+N-1) or a list ``42,7,1234``.

    Raises ValueError for anything else, a repeated seed or a seed out of range.
    """
    if text is None or not str(text).strip():
        return [base]
    raw = str(text).strip()
    try:
        if "," in raw:
            seeds = [int(part) for part in raw.split(",") if part.strip()]
        else:
            count = float(raw)
            if not count.is_integer() or count < 1:
                raise ValueError
            seeds = list(range(base, base + int(count)))
    except ValueError:
        raise ValueError(f"seeds must be a count (3) or a list of seeds (42,7,1234), got {raw!r}") from None
    if len(set(seeds)) != len(seeds) or not seeds:
        raise ValueError(f"seeds must not repeat a seed, got {raw!r}")
    for seed in seeds:
        _check(0 <= seed <= MAX_SEED, f"seed must be in [0, {MAX_SEED}], got {seed}")
    return seeds
