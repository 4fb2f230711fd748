"""Other libraries' private names live in two adapters only (fmtrain/internals.py for Keras, Ray,
Optuna and Python; fmtrain/tracking/mlflow_internals.py for MLflow): each use there is checked
against the installed library, and the rest of the package is scanned for any private name.

"Private" here: a module path with a part that starts with an underscore (``ray._private``,
``optuna._typing``) or ``keras.src``; an underscore-prefixed attribute of anything but ``self``
or ``cls`` (another library's object, or one of ours reached from outside); a subclass of another
library's class that defines an underscore-prefixed method; an environment variable that its
library's documentation does not list.
"""

import ast
import importlib.metadata
import platform

import pytest

from fmtrain import internals
from fmtrain.tracking import mlflow_internals

from conftest import PROJECT

ADAPTERS = ("internals.py", "mlflow_internals.py")
# Underscore names that are public by their library's documentation.
DOCUMENTED = {"os._exit"}
# The environment variables fmtrain sets or reads, each in its library's documentation (MLflow's
# are checked against mlflow.environment_variables, the module MLflow documents them in).
ENVIRONMENT = {
    "RAY_ADDRESS": "https://docs.ray.io/en/latest/ray-core/api/doc/ray.init.html",
    "RAY_AUTH_MODE": "https://docs.ray.io/en/latest/ray-security/token-auth.html",
    "RAY_DEDUP_LOGS": "https://docs.ray.io/en/latest/ray-observability/user-guides/configure-logging.html",
    "RAY_COLOR_PREFIX": "https://docs.ray.io/en/latest/ray-observability/user-guides/configure-logging.html",
    "RAY_USAGE_STATS_ENABLED": "https://docs.ray.io/en/latest/cluster/usage-stats.html",
    "TF_CPP_MIN_LOG_LEVEL": "https://www.tensorflow.org/api_docs/python/tf/get_logger",
    "TF_NUM_INTRAOP_THREADS": "https://www.tensorflow.org/api_docs/python/tf/config/threading",
    "TF_NUM_INTEROP_THREADS": "https://www.tensorflow.org/api_docs/python/tf/config/threading",
    "OMP_NUM_THREADS": "https://www.openmp.org/spec-html/5.0/openmpse50.html",
    "XLA_FLAGS": "https://openxla.org/xla/flags_guidance",
    "KERAS_BACKEND": "https://keras.io/getting_started/#configuring-your-backend",
    "JAX_COMPILATION_CACHE_DIR": "https://docs.jax.dev/en/latest/persistent_compilation_cache.html",
}
PREFIXES = ("RAY_", "TF_", "TUNE_", "XLA_", "OMP_", "KERAS_", "JAX_", "MLFLOW_", "CUDA_")


def _version(library: str) -> str:
    return platform.python_version() if library == "python" else importlib.metadata.version(library)


@pytest.mark.parametrize("library, what, check", internals.GUARDED + mlflow_internals.GUARDED,
                         ids=lambda value: value if isinstance(value, str) else "")
def test_each_guarded_private_name_exists_in_the_installed_library(library, what, check):
    assert check(), f"{library} {_version(library)}: {what} is gone; fmtrain's adapter needs a new way"


def _modules():
    for path in sorted((PROJECT / "fmtrain").rglob("*.py")):
        yield path.relative_to(PROJECT), ast.parse(path.read_text())


def _private_uses(tree, imported_classes) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                parts = module.split(".")
                if module.startswith("keras.src") or (parts[0] not in ("fmtrain", "__future__")
                                                      and any(part.startswith("_") for part in parts)):
                    found.append(f"import {module}")
            if isinstance(node, ast.ImportFrom) and not (node.module or "").startswith(("fmtrain", "__future__")):
                found += [f"from {node.module} import {a.name}" for a in node.names if a.name.startswith("_")]
        elif isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            text = ast.unparse(node)
            if not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")) and text not in DOCUMENTED:
                found.append(text)
        elif isinstance(node, ast.ClassDef):
            bases = [ast.unparse(base) for base in node.bases]
            if any("." in base or base in imported_classes for base in bases):  # another library's class
                found += [f"{node.name}.{item.name} overrides a private method of {', '.join(bases)}"
                          for item in node.body if isinstance(item, ast.FunctionDef)
                          and item.name.startswith("_") and not item.name.startswith("__")]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith(PREFIXES) \
                and node.value.rstrip("_") == node.value and node.value.replace("_", "").isalnum():
            if node.value.startswith("MLFLOW_"):
                import mlflow.environment_variables as documented

                if not hasattr(documented, node.value):
                    found.append(f"environment variable {node.value} (not in mlflow.environment_variables)")
            elif node.value not in ENVIRONMENT:
                found.append(f"environment variable {node.value} (not documented by its library)")
    return found


def test_no_private_name_of_another_library_outside_the_adapters():
    users = {}
    for path, tree in _modules():
        if path.name in ADAPTERS:
            continue
        imported = {alias.asname or alias.name for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
                    and not (node.module or "").startswith("fmtrain") for alias in node.names}
        if found := _private_uses(tree, imported):
            users[str(path)] = found
    assert users == {}


def test_the_scan_finds_each_kind_of_private_use():
    """The scanner itself, on code that holds one of each."""
    code = ("import ray._private.services\nfrom keras.src.utils import module_utils\n"
            "from mlflow.optuna.storage import _logger\nimport os\nos.environ['RAY_prestart_worker_first_driver'] = '0'\n"
            "os.environ['MLFLOW_NOT_A_SETTING'] = '1'\n"
            "from ray.tune.search.optuna import OptunaSearch\nclass Search(OptunaSearch):\n"
            "    def _setup_study(self, space): pass\nvalue = trial._trial_id\n")
    found = _private_uses(ast.parse(code), {"OptunaSearch"})
    assert sorted(found) == sorted(["import ray._private.services", "import keras.src.utils",
                     "from mlflow.optuna.storage import _logger",
                     "environment variable RAY_prestart_worker_first_driver (not documented by its library)",
                     "environment variable MLFLOW_NOT_A_SETTING (not in mlflow.environment_variables)",
                     "Search._setup_study overrides a private method of OptunaSearch", "trial._trial_id"])
