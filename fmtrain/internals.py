"""The private names of other libraries that fmtrain relies on, in one place.

Each has no public equivalent in the versions pinned in pyproject.toml. ``tests/test_internals.py``
checks every name below against the installed library and fails, naming the library and its
version, when an upgrade renames or removes one. Nothing else in fmtrain reaches into another
library's private names.
"""

from __future__ import annotations

import sys

# Each guarded name: (library, module holding it, attribute path), checked by the tests.
GUARDED = [
    ("keras", "keras.src.utils.module_utils", "tensorflow._available"),
    ("python", "atexit", "_run_exitfuncs"),
    ("optuna", "optuna.trial", "FrozenTrial._trial_id"),
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


def run_exit_handlers() -> None:
    """Run the ``atexit`` handlers now (MLflow's, JAX's), so that the process can leave with
    ``os._exit`` and skip Python's slow tear-down of native state; ``atexit`` has no public call."""
    import atexit

    atexit._run_exitfuncs()
