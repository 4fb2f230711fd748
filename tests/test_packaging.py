"""fmtrain installs the ways people install Python tools: a wheel, `mlflow run` with uv, lint."""

import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from conftest import PROJECT, all_runs

BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """fmtrain's wheel, built from the checkout as `pip wheel .` builds it."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                           "-q", "-w", str(out), str(PROJECT)], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    (path,) = out.glob("fmtrain-*.whl")
    return path


def test_the_wheel_holds_every_module_of_the_source_tree(wheel):
    source = {p.relative_to(PROJECT).as_posix() for p in (PROJECT / "fmtrain").rglob("*.py")}
    packed = {name for name in zipfile.ZipFile(wheel).namelist() if name.endswith(".py")}
    assert source - packed == set() and "fmtrain/tracking/store.py" in packed


def test_the_installed_wheel_trains_from_outside_the_checkout(wheel, tmp_path, real_data_dir):
    """A fresh virtual environment, fmtrain installed from the wheel (not editable), run elsewhere."""
    venv = tmp_path / "venv"
    uv = shutil.which("uv", path=str(BIN)) or "uv"
    subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
    done = subprocess.run([uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"),
                           f"{wheel}"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MLFLOW_TRACKING_URI")}
    env["PATH"] = f"{venv / 'bin'}:{env['PATH']}"
    where = subprocess.run([str(venv / "bin" / "python"), "-c", "import fmtrain; print(fmtrain.__file__)"],
                           capture_output=True, text=True, cwd=work, env=env, check=True).stdout
    assert where.startswith(str(venv)), where
    configs = subprocess.run(["fmtrain", "configs"], capture_output=True, text=True, cwd=work, env=env)
    assert configs.returncode == 0 and "early-stopping (default)" in configs.stdout
    train = subprocess.run(["fmtrain", "train", "--config", "adam", "--limit", "500", "--epochs", "1",
                            "--quiet", "--data_dir", str(real_data_dir)],
                           capture_output=True, text=True, cwd=work, env=env, timeout=600)
    assert train.returncode == 0, train.stderr[-3000:]
    assert "(adam): 1 epochs" in train.stdout and (work / "mlflow.db").exists()
    # TensorFlow's native start-up lines (oneDNN, CUDA, cuInit) stay off the terminal.
    for noise in ("oneDNN", "cuInit", "cuda", "absl::InitializeLog"):
        assert noise not in train.stderr, train.stderr[-2000:]


def _pins() -> dict[str, str]:
    spec = yaml.safe_load((PROJECT / "conda.yaml").read_text())
    (pip,) = [d["pip"] for d in spec["dependencies"] if isinstance(d, dict)]
    return {Requirement(line).name: line for line in pip if not line.startswith("-e")}


def test_conda_yaml_pins_every_dependency_within_pyproject_ranges():
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    pins = _pins()
    for text in project["dependencies"]:
        wanted = Requirement(text)
        assert wanted.name in pins, f"conda.yaml does not pin {wanted.name}"
        pinned = Requirement(pins[wanted.name])
        (version,) = [spec.version for spec in pinned.specifier]
        assert wanted.specifier.contains(version), f"{pins[wanted.name]} is outside {text}"


def test_mlflow_run_with_uv_builds_its_own_environment(store, tmp_path, real_data_dir):
    """`mlflow run .` where there is no conda: MLflow builds a uv environment from conda.yaml."""
    env = dict(os.environ, MLFLOW_TRACKING_URI=store)
    done = subprocess.run(["mlflow", "run", str(PROJECT), "--env-manager", "uv", "-P", "config=adam",
                           "-P", "limit=500", "-P", "epochs=1", "-P", f"data_dir={real_data_dir}",
                           "--experiment-name", "fashion-mnist"],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    (run,) = all_runs()
    assert run.info.status == "FINISHED" and run.data.params["epochs"] == "1"
    assert run.data.metrics["reload_checks_passed"] == 1.0


def test_ruff_finds_nothing_to_fix():
    done = subprocess.run([str(BIN / "ruff"), "check", "fmtrain", "tests", "benchmarks", "train.py"],
                          capture_output=True, text=True, cwd=PROJECT)
    assert done.returncode == 0, done.stdout[-3000:]
