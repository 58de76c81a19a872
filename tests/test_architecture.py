"""The tree keeps its shape: the import-linter contracts in pyproject.toml hold (lazy imports included), and no
module grows past 600 lines."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT = Path(sys.executable).with_name("lint-imports")
MAX_LINES = 600


def _lint(cwd: Path, config: Path | None = None) -> subprocess.CompletedProcess:
    args = [str(LINT), "--no-cache"] + (["--config", str(config)] if config else [])
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"})


def test_the_layer_contracts_hold():
    proc = _lint(ROOT)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    assert "0 broken" in out and " KEPT" in out, out[-2000:]


def test_the_cycle_contract_catches_a_cycle_hidden_in_a_function(tmp_path):
    # the checker itself, on a package made to break it: b imports a lazily, a imports b at the top
    pkg = tmp_path / "cyc"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n    return a\n")
    cfg = tmp_path / "setup.cfg"
    cfg.write_text("[importlinter]\nroot_package = cyc\n\n[importlinter:contract:1]\nname = acyclic\n"
                   "type = acyclic_siblings\nancestors = cyc\n")
    proc = _lint(tmp_path, cfg)
    assert proc.returncode != 0 and "BROKEN" in proc.stdout, proc.stdout + proc.stderr


def test_no_module_is_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in sorted((ROOT / "generator").rglob("*.py")) + sorted((ROOT / "perf").rglob("*.py"))
            if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not long, f"split these by job: {long}"
