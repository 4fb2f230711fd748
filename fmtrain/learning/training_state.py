"""A training's resumable state as data: what one epoch's end leaves, saved to and read from one
``.npz`` file, with numpy alone (no Keras: a resume reads it before the backend is chosen).

Epochs alternate between two files, ``state-0.npz`` and ``state-1.npz``, so that a process
killed while writing one leaves the other, one epoch older, whole. ``learning.resume`` says
what the state holds and why.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

STATE_FILES = ("state-0.npz", "state-1.npz")  # epoch e's state goes to STATE_FILES[e % 2]


@dataclass
class TrainingState:
    """Where a training stood at the end of an epoch: enough for fit() to go on from there."""

    epoch: int  # epochs completed: the next fit() begins at this (0-based) epoch
    stopped: bool  # a callback stopped training (EarlyStopping): no epoch is left to train
    history: dict[str, list[float]]
    epoch_seconds: list[float]
    variables: list[np.ndarray]  # model.variables, the Dropout layer's seed state included
    optimizer_variables: list[np.ndarray]
    early_stopping: dict | None = None  # wait, best, best_epoch, stopped_epoch
    best_weights: list[np.ndarray] | None = None  # EarlyStopping's
    checkpoint_best: float | None = None  # ModelCheckpoint's best val_loss
    checkpoint_bytes: bytes | None = None  # its best-model.keras, once it wrote one
    seed: int = 0
    settings: dict[str, str] = field(default_factory=dict)

    def meta(self) -> dict:
        return {"epoch": self.epoch, "stopped": self.stopped, "history": self.history,
                "epoch_seconds": self.epoch_seconds, "early_stopping": self.early_stopping,
                "checkpoint_best": self.checkpoint_best, "seed": self.seed, "settings": self.settings,
                "counts": [len(self.variables), len(self.optimizer_variables),
                           -1 if self.best_weights is None else len(self.best_weights)]}

    def save(self, folder: Path) -> Path:
        """Write the state into ``folder`` (its file of the two); returns its path."""
        folder.mkdir(parents=True, exist_ok=True)
        arrays = {f"v{i}": value for i, value in enumerate(self.variables)}
        arrays.update({f"o{i}": value for i, value in enumerate(self.optimizer_variables)})
        arrays.update({f"b{i}": value for i, value in enumerate(self.best_weights or [])})
        if self.checkpoint_bytes is not None:
            arrays["checkpoint"] = np.frombuffer(self.checkpoint_bytes, dtype=np.uint8)
        name = STATE_FILES[self.epoch % 2]
        path, partial = folder / name, folder / f".{name}"
        try:
            with open(partial, "wb") as handle:
                np.savez(handle, meta=np.array(json.dumps(self.meta())), **arrays)
        except OSError as error:  # a full disk: the file named, and no partial file kept
            partial.unlink(missing_ok=True)
            raise OSError(error.errno, error.strerror, str(path)) from None
        partial.replace(path)
        return path

    @classmethod
    def latest(cls, folder: Path) -> TrainingState | None:
        """The newer of the states in ``folder`` that can be read whole; None if none can."""
        found = []
        for name in STATE_FILES:
            try:
                found.append(cls.load(Path(folder) / name))
            except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile):  # absent, or cut short
                continue
        return max(found, key=lambda state: state.epoch, default=None)

    @classmethod
    def load(cls, path: Path) -> TrainingState:
        """The state saved in ``path``; OSError or ValueError when it is missing or cut short."""
        with np.load(path) as saved:
            meta = json.loads(str(saved["meta"]))
            count, optimizer_count, best_count = meta["counts"]
            arrays = {key: saved[key] for key in saved.files}
        checkpoint = arrays.get("checkpoint")
        return cls(epoch=meta["epoch"], stopped=meta["stopped"], history=meta["history"],
                   epoch_seconds=meta["epoch_seconds"],
                   variables=[arrays[f"v{i}"] for i in range(count)],
                   optimizer_variables=[arrays[f"o{i}"] for i in range(optimizer_count)],
                   early_stopping=meta["early_stopping"],
                   best_weights=None if best_count < 0 else [arrays[f"b{i}"] for i in range(best_count)],
                   checkpoint_best=meta["checkpoint_best"],
                   checkpoint_bytes=None if checkpoint is None else checkpoint.tobytes(),
                   seed=meta["seed"], settings=meta["settings"])
