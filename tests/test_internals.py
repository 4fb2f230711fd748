"""fmtrain.internals guards the private names of other libraries that fmtrain needs: each must
still exist in the installed version, and nothing outside that module may use one."""

import importlib
import importlib.metadata
import platform
import re

import pytest

from fmtrain import internals

from conftest import PROJECT

PRIVATE = re.compile(r"keras\.src|_ot_trials|_compile_config|_run_exitfuncs|module_utils\.tensorflow")


def _version(library: str) -> str:
    return platform.python_version() if library == "python" else importlib.metadata.version(library)


@pytest.mark.parametrize("library, module, attribute", internals.GUARDED)
def test_each_guarded_private_name_exists_in_the_installed_library(library, module, attribute):
    where = f"{library} {_version(library)}: {module}.{attribute}"
    try:
        owner = importlib.import_module(module)
    except ImportError as error:
        pytest.fail(f"{where} is gone ({error}); fmtrain/internals.py needs a new way")
    for part in attribute.split("."):
        assert hasattr(owner, part), f"{where} is gone; fmtrain/internals.py needs a new way"
        owner = getattr(owner, part)


def test_no_private_name_of_another_library_outside_the_adapter():
    users = [str(path.relative_to(PROJECT)) for path in (PROJECT / "fmtrain").rglob("*.py")
             if path.name != "internals.py" and PRIVATE.search(path.read_text())]
    assert users == []
