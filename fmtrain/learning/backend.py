"""Choose the Keras backend before Keras is imported, and import it without native noise.

TensorFlow's C++ start-up lines (oneDNN, CUDA drivers, ``cuInit``) are written by absl before
any Python setting can stop them. They say nothing a user can act on, so they are sent to
/dev/null during the import, unless the user asks for them (``TF_CPP_MIN_LOG_LEVEL=0`` or
``FMTRAIN_DEBUG=1``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys

from fmtrain import internals

BACKENDS = ("tensorflow", "jax")
DEFAULT_BACKEND = "tensorflow"


def debugging() -> bool:
    return bool(os.environ.get("FMTRAIN_DEBUG"))


@contextlib.contextmanager
def native_stderr_silenced(enabled: bool = True):
    """Send file descriptor 2 to /dev/null for the block (Python's own errors still raise)."""
    if not enabled:
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 2)
    os.close(null)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)


def quiet_loggers() -> None:
    """Keep routine notices off the terminal, in the command's process and in a Ray worker.

    TensorFlow's Python warnings and MLflow's routine notices (creating the sqlite store's
    tables, a new experiment) say nothing a user can act on; FMTRAIN_DEBUG=1 keeps them.
    """
    if debugging():
        return
    for name in ("tensorflow", "absl"):
        logging.getLogger(name).setLevel(logging.ERROR)
    for name in ("mlflow.store.db.utils", "alembic", "mlflow.tracking.fluent"):
        logging.getLogger(name).setLevel(logging.WARNING)
    # System metrics start and stop with every run; a store that is down stops them for the run
    # (MLflow warns of it), which the run's own error reports better.
    logging.getLogger("mlflow.system_metrics.system_metrics_monitor").setLevel(logging.ERROR)
    # Logging a model in an environment without pip (uv's) warns that pip has no version.
    logging.getLogger("mlflow.utils.environment").setLevel(logging.ERROR)
    # Logging a model checks its input example; an evaluation names each of its steps, and warns
    # of the extra metrics that its trial on one image does not compute.
    logging.getLogger("mlflow.pyfunc").setLevel(logging.WARNING)
    logging.getLogger("mlflow.models.evaluation").setLevel(logging.ERROR)
    # Loading a run's model (`fmtrain evaluate --model_uri runs:/...`) would draw MLflow's
    # download progress bars, one redrawn line per file, on the terminal.
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")


def use(backend: str = DEFAULT_BACKEND):
    """Select ``backend`` for Keras and import Keras quietly; returns the keras module.

    Raises ValueError when Keras was already imported with another backend, or when the backend's
    package is not installed (with the command that installs it).
    """
    if backend not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; choose one of: {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != backend:
            raise ValueError(f"this process already runs Keras on {keras.backend.backend()}; "
                             f"backend={backend} needs a new process")
        return keras
    os.environ["KERAS_BACKEND"] = backend
    quiet_loggers()  # a Ray worker trains without the command line's start-up
    # Asking for TensorFlow's logs means TF_CPP_MIN_LOG_LEVEL=0: other values (TensorFlow sets 1
    # in a process that imported it, and children inherit it) ask for less, never more.
    quiet = not debugging() and os.environ.get("TF_CPP_MIN_LOG_LEVEL") != "0"
    if quiet:
        os.environ["TF_CPP_MIN_LOG_LEVEL"] = "3"
    try:
        with native_stderr_silenced(quiet):
            if backend == "tensorflow":
                import tensorflow as tf

                tf.config.list_physical_devices()  # probes CUDA now, while stderr is quiet
            else:
                import jax

                compiled_functions_kept(jax)
                jax.devices()
            import keras

            if backend != "tensorflow":
                internals.tell_keras_tensorflow_is_absent()
    except ImportError as error:
        extra = "jax" if backend == "jax" else "tensorflow"
        raise ValueError(f"backend {backend} is not installed ({error}); install it with "
                         f"`pip install '.[{extra}]'` in fmtrain's checkout") from None
    return keras


def multi_seed_default() -> str:
    """The backend of a sweep with several seeds when none is given: JAX where it is installed.

    With fmtrain's own batch order both backends train the same mathematics; JAX does an epoch
    in about half of TensorFlow's time on a CPU and starts sooner, and every seed is a new
    draw of initial weights anyway (each backend draws its own). A single run keeps
    TensorFlow, the chapter's backend. A process that already runs Keras keeps its backend
    (one process cannot switch, and a sweep with one worker trains in this process)."""
    import importlib.util

    if "keras" in sys.modules:
        import keras

        return keras.backend.backend()
    return "jax" if importlib.util.find_spec("jax") else DEFAULT_BACKEND


def compilation_cache() -> str:
    """Where JAX keeps compiled functions between processes: ``$JAX_COMPILATION_CACHE_DIR``, else
    fmtrain's folder in the user's cache (``$XDG_CACHE_HOME``, ``~/.cache``)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("JAX_COMPILATION_CACHE_DIR") or os.path.join(base, "fmtrain", "jax")


def compiled_functions_kept(jax) -> None:
    """Keep every function XLA compiles in JAX's persistent cache, so that a run reuses what an
    earlier run of the same shapes compiled (a sweep's runs, a new seed, a later sweep): the
    same executable, found by a hash of the program and of the JAX and XLA versions and flags.
    Compiling a run's functions takes seconds on a CPU; a sweep's runs differ only in values."""
    jax.config.update("jax_compilation_cache_dir", compilation_cache())
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def requirements(backend: str = DEFAULT_BACKEND) -> list[str]:
    """pip requirements of a model saved on ``backend``, pinned as installed: what its code
    imports (Keras, the backend, numpy, pandas; MLflow adds itself), never fmtrain."""
    from importlib.metadata import version

    packages = ("keras", *(("tensorflow",) if backend == "tensorflow" else ("jax", "jaxlib")), "numpy", "pandas")
    return [f"{name}=={version(name)}" for name in packages]
