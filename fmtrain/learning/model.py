"""Pure builders for the chapter's model, optimizer and callbacks: they touch no files."""

from __future__ import annotations

import keras

from fmtrain.learning.configs import TrainConfig

INPUT_SHAPE = (28, 28)
NUM_CLASSES = 10


def build_model(config: TrainConfig) -> keras.Model:
    """The chapter's ``model_fn``: Flatten -> Dense(units, relu) -> [Dropout] -> Dense(10, softmax),
    compiled with sparse categorical cross-entropy and accuracy (the chapter's units: 100)."""
    # The chapter calls model_fn(keras.layers.Dropout(0.3)): the Dropout layer, and its seed,
    # exist before the Dense layers draw their initial weights. Creating it first too keeps a
    # seeded run identical to the chapter's code run with the same seed.
    dropout = keras.layers.Dropout(config.dropout_rate) if config.dropout_rate > 0 else None
    layers = [keras.Input(shape=INPUT_SHAPE), keras.layers.Flatten(),
              keras.layers.Dense(config.units, activation="relu")]
    if dropout is not None:
        layers.append(dropout)
    layers.append(keras.layers.Dense(NUM_CLASSES, activation="softmax"))
    model = keras.Sequential(layers, name="fashion_mnist_mlp")
    model.compile(optimizer=build_optimizer(config.optimizer, config.learning_rate),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"],
                  steps_per_execution=config.steps_per_execution)
    return model


def build_optimizer(name: str, learning_rate: float | None = None) -> keras.optimizers.Optimizer:
    """A Keras optimizer by name; ``learning_rate=None`` keeps Keras's default for it."""
    classes = {"rmsprop": keras.optimizers.RMSprop, "adam": keras.optimizers.Adam,
               "sgd": keras.optimizers.SGD}
    if name not in classes:
        raise ValueError(f"unknown optimizer {name!r}; choose one of: {', '.join(classes)}")
    return classes[name]() if learning_rate is None else classes[name](learning_rate=learning_rate)


def build_callbacks(config: TrainConfig, checkpoint_path: str | None = None) -> list[keras.callbacks.Callback]:
    """The chapter's callbacks for ``config``: ModelCheckpoint (best only) and EarlyStopping,
    after TerminateOnNaN, which stops a diverging run at once instead of training on NaN."""
    callbacks = [keras.callbacks.TerminateOnNaN()]
    if config.checkpoint:
        if checkpoint_path is None:
            raise ValueError("checkpoint=true needs a checkpoint_path")
        callbacks.append(keras.callbacks.ModelCheckpoint(checkpoint_path, save_best_only=True))
    if config.patience is not None:
        callbacks.append(keras.callbacks.EarlyStopping(patience=config.patience,
                                                       restore_best_weights=True))
    return callbacks
