"""Packaging (issue 14 item 9): the wheel carries every template and runner file, and a non-editable
install -- in a fresh virtual environment, run from outside the checkout -- builds a spec."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_SKIP = shutil.ignore_patterns(".venv", ".git", "model_repository", ".tools", "checkpoints", "results",
                               "__pycache__", "*.egg-info", ".pytest_cache", "tests")


def SKIP(folder, names):
    """What the wheel is not built from; ``build/`` only at the root (``generator/build/`` is a package)."""
    skipped = set(_SKIP(folder, names))
    if Path(folder).resolve() == ROOT and "build" in names:
        skipped.add("build")
    return skipped


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built from a copy of the source tree (setuptools leaves build/ behind in the tree)."""
    src = tmp_path_factory.mktemp("src") / "tritongen"
    shutil.copytree(ROOT, src, ignore=SKIP, symlinks=True)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(src),
                    "-w", str(out)], check=True, capture_output=True, text=True, timeout=300)
    (whl,) = out.glob("tritongen-*.whl")
    return whl


def test_wheel_ships_every_template_and_runner(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    templates = sorted(p.relative_to(ROOT / "templates") for p in (ROOT / "templates").rglob("*") if p.is_file()
                       and "__pycache__" not in p.parts)
    assert templates, "no templates found in the checkout"
    missing = [str(t) for t in templates if f"generator/_templates/{t.as_posix()}" not in names]
    assert not missing, f"not in the wheel: {missing}"
    assert {"generator/_templates/runner/model.py", "generator/_templates/preprocess/model.py",
            "generator/_templates/config.pbtxt.j2"} <= names


@pytest.mark.slow
def test_non_editable_install_builds_a_spec(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    py = venv / "bin" / "python"
    site = Path(subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    # the dependencies (torch, onnx, ...) come from the project's environment, as a plain path: its own
    # .pth files (the editable install of this checkout) are not processed, so `generator` is the wheel's
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)],
                   check=True, capture_output=True, text=True, timeout=300)
    work = tmp_path / "user"
    work.mkdir()
    (work / "lin.py").write_text("import torch\n\ndef make():\n    torch.manual_seed(0)\n"
                                 "    return torch.nn.Linear(4, 3).eval()\n")
    (work / "spec.yaml").write_text(
        "models:\n  - name: lin\n    source: {factory: 'lin:make'}\n"
        "    inputs: [{name: input, dtype: float32, shape: [4]}]\n"
        "    outputs: [{name: output, dtype: float32, shape: [3]}]\n"
        "    max_batch_size: 2\n    variants: [onnx]\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run([str(py), "-c", "import generator.config.render as r; print(r.__file__, r.DEFAULT_TEMPLATES)"],
                           cwd=work, env=env, check=True, capture_output=True, text=True).stdout
    assert str(venv) in where and "_templates" in where and str(ROOT) not in where, where
    r = subprocess.run([str(venv / "bin" / "tritongen"), "build", "spec.yaml", "-o", "repo", "--target", "embedded"],
                       cwd=work, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (work / "repo" / "lin__onnx" / "config.pbtxt").is_file()
    assert (work / "repo" / "lin__onnx" / "1" / "model.py").read_text() == \
        (ROOT / "templates" / "runner" / "model.py").read_text()
