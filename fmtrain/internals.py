"""The private names of Keras, Ray, Optuna and Python that fmtrain relies on, in one adapter.

Each has no public equivalent in the versions pinned in pyproject.toml. ``GUARDED`` names each
with a check that it is still there; ``tests/test_internals.py`` runs every check against the
installed libraries (failing with the library and its version when an upgrade renames or removes
one) and scans the rest of the package for private names, which only this module and
``fmtrain/tracking/mlflow_internals.py`` (MLflow's) may use.
"""

from __future__ import annotations

import os
import sys


def _keras_tensorflow_flag() -> bool:
    from keras.src.utils import module_utils

    return hasattr(module_utils.tensorflow, "_available")


def _atexit_runner() -> bool:
    import atexit

    return callable(getattr(atexit, "_run_exitfuncs", None))


def _optuna_trial_id() -> bool:
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study()
    study.ask()
    return isinstance(getattr(study.trials[0], "_trial_id", None), int)


def _ray_prestart_flag() -> bool:
    import importlib.util
    from pathlib import Path

    raylet = Path(importlib.util.find_spec("ray").origin).parent / "_raylet.so"
    return b"prestart_worker_first_driver" in raylet.read_bytes()


# (library, what is used, a check that it is still there)
GUARDED = [
    ("keras", "keras.src.utils.module_utils.tensorflow._available", _keras_tensorflow_flag),
    ("python", "atexit._run_exitfuncs", _atexit_runner),
    ("optuna", "FrozenTrial._trial_id", _optuna_trial_id),
    ("ray", "the raylet's flag RAY_prestart_worker_first_driver", _ray_prestart_flag),
]


def tell_keras_tensorflow_is_absent() -> None:
    """Keras 3 asks "is TensorFlow installed?" by importing it (``module_utils.tensorflow``)
    when it saves a model or seeds its generators; in a JAX process that import costs seconds
    and hundreds of MiB for nothing. Keras has no public switch for it."""
    if "tensorflow" in sys.modules:
        return
    from keras.src.utils import module_utils

    module_utils.tensorflow._available = False


def optuna_trial_id(frozen):
    """The storage's id of a trial read back from a study (an ``optuna.trial.FrozenTrial``).

    A study can be told how a trial ended by the trial's number, but MLflow's Optuna storage does
    not map numbers to trials (``get_trial_id_from_study_id_trial_number`` is not implemented
    there); ``optuna.trial.Trial(study, trial_id)``, public, takes the id that FrozenTrial keeps
    private."""
    return frozen._trial_id


def ray_idle_workers_not_prestarted() -> None:
    """No idle worker processes started with a local Ray instance: the raylet this process starts
    reads ``RAY_prestart_worker_first_driver`` (a flag of Ray's own configuration, which its
    documentation does not list). fmtrain's tasks carry a runtime environment of their own, so
    Ray starts their workers anyway, and each idle one would only cost a Python start-up."""
    os.environ.setdefault("RAY_prestart_worker_first_driver", "0")


def run_exit_handlers() -> None:
    """Run the ``atexit`` handlers now (MLflow's, JAX's), so that the process can leave with
    ``os._exit`` and skip Python's slow tear-down of native state; ``atexit`` has no public call."""
    import atexit

    atexit._run_exitfuncs()
