"""generator.serve.tools: tritonserver and perf_analyzer installed into .tools/ once, runnable, atomic."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

import pytest

import generator.serve.tools as tools
from generator.errors import UserError


def test_tritonserver_install_is_idempotent_and_runs_our_venv(triton_install):
    t0 = time.monotonic()
    again = tools.ensure_tritonserver()
    assert time.monotonic() - t0 < 2 and again.binary == triton_install.binary
    assert triton_install.binary.is_file() and os.access(triton_install.binary, os.X_OK)
    assert (triton_install.backend_dir / "python" / "triton_python_backend_stub").is_file()
    assert triton_install.env["PATH"].split(os.pathsep)[0] == str(Path(sys.executable).parent)
    assert sysconfig.get_config_var("LIBDIR") in triton_install.env["LD_LIBRARY_PATH"].split(os.pathsep)


def test_perf_analyzer_runs(perf_analyzer_install):
    proc = subprocess.run([str(perf_analyzer_install.binary), "--version"], capture_output=True, text=True,
                          env=perf_analyzer_install.env, timeout=60)
    assert proc.returncode == 0 and "2.51.0" in proc.stdout + proc.stderr
    for lib in ("libb64.so.0d", "libcudart.so.12"):
        assert (perf_analyzer_install.lib_dir / lib).resolve().is_file()


def test_failed_pip_install_is_a_user_error_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(tools, "PYTRITON_VERSION", "0.0.0.999")  # no such release anywhere
    with pytest.raises(UserError, match=r"installing nvidia-pytriton==0\.0\.0\.999 .* failed"):
        tools.ensure_tritonserver(tmp_path / "tools")
    assert [p.name for p in (tmp_path / "tools").iterdir()] == [".lock"]


def test_tools_dir_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRITONGEN_TOOLS", str(tmp_path / "elsewhere"))
    assert tools.tools_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("TRITONGEN_TOOLS")
    assert tools.tools_dir() == Path(__file__).resolve().parents[1] / ".tools"  # the checkout root
