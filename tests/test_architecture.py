"""The package's architecture, checked by tools: layers (import-linter), no cycles, one MLflow
boundary, small modules, a package root that shows the layers."""

import ast
import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import PROJECT

BIN = Path(sys.executable).parent
PACKAGE = PROJECT / "fmtrain"
LAYERS = ["cli", "workflows", "tuning", "execution", "tracking", "analysis", "learning"]


def _lint_imports(project: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(project)}
    return subprocess.run([str(BIN / "lint-imports"), "--config", str(project / "pyproject.toml"), "--no-cache"],
                          capture_output=True, text=True, cwd=project, env=env)


def test_import_linter_keeps_every_contract():
    done = _lint_imports(PROJECT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Contracts: 2 kept, 0 broken." in done.stdout


def test_import_linter_fails_on_an_upward_import(tmp_path):
    """A copy of the package whose learning code imports the command line: the contract breaks."""
    shutil.copytree(PACKAGE, tmp_path / "fmtrain", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(PROJECT / "pyproject.toml", tmp_path / "pyproject.toml")
    data = tmp_path / "fmtrain" / "learning" / "data.py"
    data.write_text(data.read_text() + "\nfrom fmtrain.cli import output  # noqa: E402\n")
    done = _lint_imports(tmp_path)
    assert done.returncode != 0
    assert "fmtrain.learning.data -> fmtrain.cli.output" in done.stdout


def _imported_modules(path):
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            yield node.lineno, [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            yield node.lineno, [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]


def test_only_the_tracking_boundary_imports_mlflow():
    offenders = [f"{path.relative_to(PROJECT)}:{line}"
                 for path in (PROJECT / "fmtrain").rglob("*.py")
                 for line, names in _imported_modules(path)
                 if any(n.split(".")[0] == "mlflow" for n in names) and path.parent.name != "tracking"]
    assert offenders == []


def test_no_import_cycles_inside_a_layer():
    """import-linter checks the layers; a cycle between modules of one layer is checked here."""
    package = PROJECT / "fmtrain"
    modules = {".".join(p.relative_to(PROJECT).with_suffix("").parts).removesuffix(".__init__"): p
               for p in package.rglob("*.py")}
    graph = {name: {m for _, names in _imported_modules(path) for m in names if m in modules and m != name}
             for name, path in modules.items()}
    # A cycle shows up as a module reachable from itself.
    for start in graph:
        seen, todo = set(), list(graph[start])
        while todo:
            current = todo.pop()
            assert current != start, f"import cycle through {start}"
            if current not in seen:
                seen.add(current)
                todo.extend(graph[current])


def test_every_module_is_at_most_300_lines():
    long = {str(path.relative_to(PROJECT)): n for path in PACKAGE.rglob("*.py")
            if (n := len(path.read_text().splitlines())) > 300}
    assert long == {}


def test_the_package_root_shows_the_layers_and_each_says_what_it_owns():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name != "__pycache__")
    assert entries == sorted(["__init__.py", "errors.py", "internals.py", *LAYERS])
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text()))
        assert doc and "import" in doc.lower(), f"fmtrain/{layer}/__init__.py says what it owns and may import"


def test_no_module_name_shadows_the_standard_library():
    shadows = [str(path.relative_to(PROJECT)) for path in PACKAGE.rglob("*.py")
               if path.stem in sys.stdlib_module_names]
    assert shadows == []


def test_every_module_name_is_used_once_in_the_package():
    from collections import Counter

    counts = Counter(path.name for path in PACKAGE.rglob("*.py") if path.name != "__init__.py")
    assert {name: count for name, count in counts.items() if count > 1} == {}


def test_tag_and_param_names_are_read_only_inside_the_tracking_layer():
    """Nothing above tracking/ reads a tag or param by its key: it reads typed records."""
    users = [str(path.relative_to(PROJECT)) for path in PACKAGE.rglob("*.py")
             if "tracking" not in path.relative_to(PACKAGE).parts
             and any(name == "fmtrain.tracking.names" or name.startswith("fmtrain.tracking.names.")
                     for _, names in _imported_modules(path) for name in names)]
    assert users == []
