"""Faults around the repository on disk: a build killed with SIGKILL midway, two builds of one output at
once, and a commit killed between its two renames. Real `tritongen build` processes, real signals."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from specs import linear_model, write_spec

from generator.errors import UserError
from generator.formats.repository import OutputLock, Staging


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3).eval()


def _spec(folder: Path, seed: int) -> Path:
    """A spec whose one model is a Linear(4, 3) drawn with ``seed`` (a TorchScript file beside it)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.trace(_linear(seed), (torch.randn(2, 4),)), str(folder / "lin.ts.pt"))
    return write_spec(folder, {"models": [linear_model(source={"torchscript": "lin.ts.pt"},
                                                       variants=["onnx"])]})


def _build_cmd(spec: Path, out: Path, build_dir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "generator.cli", "build", str(spec), "-o", str(out), "--build-dir", str(build_dir),
            "--target", "embedded", *extra]


def tree_hash(folder: Path) -> str:
    """sha256 over every path, file mode and byte under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode() + b"\0" + oct(p.stat().st_mode).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def _wait_for(cond, timeout_s: float, what: str, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not cond():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the build exited ({proc.returncode}) before {what}: {proc.stdout.read()[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _answers(repo: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(repo / "lin__onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x})[0]


def _consistent(repo: Path) -> None:
    """Every model folder matches its own manifest, byte for byte (no file from another build)."""
    for manifest in repo.glob("*/manifest.json"):
        m = json.loads(manifest.read_text())
        for f in m["files"]:
            p = manifest.parent / "1" / f["path"]
            assert hashlib.sha256(p.read_bytes()).hexdigest() == f["sha256"], p


def test_build_killed_midway_leaves_the_previous_repository_byte_identical(tmp_path):
    out, bdir = tmp_path / "repo", tmp_path / "build"
    first = subprocess.run(_build_cmd(_spec(tmp_path / "a", 1), out, bdir), capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-2000:]
    before = tree_hash(out)

    proc = subprocess.Popen(_build_cmd(_spec(tmp_path / "b", 2), out, bdir), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:  # midway: the new repository is being staged and a variant is being built
        _wait_for(lambda: any(tmp_path.glob(".repo.staging-*")) and any(bdir.glob("lin/*.tmp")), 120,
                  "the second build to start staging", proc)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == -signal.SIGKILL
    assert tree_hash(out) == before
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(_answers(out, x), _linear(1)(torch.from_numpy(x)).detach().numpy(), atol=1e-5)

    # the lock died with its holder; the next build cleans the leftovers and goes through
    again = subprocess.run(_build_cmd(_spec(tmp_path / "b", 2), out, bdir), capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    assert not list(tmp_path.glob(".repo.staging-*"))
    np.testing.assert_allclose(_answers(out, x), _linear(2)(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_two_builds_of_one_output_one_fails_clearly_one_waits_never_a_mix(tmp_path):
    out, bdir = tmp_path / "repo", tmp_path / "build"
    first = subprocess.Popen(_build_cmd(_spec(tmp_path / "a", 1), out, bdir), stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True)
    try:
        _wait_for(lambda: any(tmp_path.glob(".repo.staging-*")), 120, "the first build to take the lock", first)
        refused = subprocess.run(_build_cmd(_spec(tmp_path / "b", 2), out, tmp_path / "build2"),
                                 capture_output=True, text=True, timeout=300)
        waiting = subprocess.Popen(_build_cmd(_spec(tmp_path / "b", 2), out, tmp_path / "build2", "--wait-lock", "300"),
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        assert first.wait(300) == 0, first.stdout.read()[-2000:]
        waited = waiting.communicate(timeout=300)[0]
    finally:
        for p in (first, locals().get("waiting")):
            if p is not None and p.poll() is None:
                p.kill()
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert f"another tritongen build (pid {first.pid}) is writing it" in refused.stderr
    assert "--wait-lock" in refused.stderr
    assert waiting.returncode == 0, waited[-2000:]
    assert "waiting for the build holding" in waited
    # the last build to commit is the repository, whole
    _consistent(out)
    x = np.ones((2, 4), np.float32)
    np.testing.assert_allclose(_answers(out, x), _linear(2)(torch.from_numpy(x)).detach().numpy(), atol=1e-5)


def test_lock_fails_at_once_or_times_out_naming_the_holder(tmp_path):
    out = tmp_path / "repo"
    with OutputLock(out):
        with pytest.raises(UserError, match=rf"another tritongen build \(pid {os.getpid()}\)"):
            OutputLock(out).acquire()
        told = []
        with pytest.raises(UserError, match=r"after waiting 0 s"):
            OutputLock(out, wait_s=0.3, on_wait=told.append).acquire()
        assert told and "waiting for the build holding" in told[0]
    OutputLock(out).acquire().release()  # free again once released


def test_commit_killed_between_its_renames_is_put_back_by_the_next_build(tmp_path):
    out = tmp_path / "repo"
    (out / "m" / "1").mkdir(parents=True)
    (out / "m" / "config.pbtxt").write_text('name: "m"\n')
    before = tree_hash(out)
    os.rename(out, tmp_path / ".repo.old-99999")  # what a SIGKILL right after the first rename leaves
    (tmp_path / ".repo.staging-99999").mkdir()
    staging = Staging(out, keep_existing_except=None)
    try:
        assert tree_hash(out) == before
        assert sorted(p.name for p in tmp_path.iterdir() if p.name != ".repo.lock") == [staging.dir.name, "repo"]
    finally:
        staging.discard()


def test_only_keeps_an_ensembles_empty_version_folder(tmp_path):
    """--only copies the other models into the new repository: an ensemble's ``1/`` is empty and must survive
    (without it Triton refuses the ensemble), and a repository that lost it is not taken for unchanged."""
    out = tmp_path / "repo"
    (out / "m__ensemble" / "1").mkdir(parents=True)
    (out / "m__ensemble" / "config.pbtxt").write_text('name: "m__ensemble"\nplatform: "ensemble"\n')
    staging = Staging(out, keep_existing_except={"other"})
    with_folder = staging.fingerprint()
    (staging.dir / "m__ensemble" / "1").rmdir()
    without = staging.fingerprint()
    (staging.dir / "m__ensemble" / "1").mkdir()
    staging.commit()
    assert (out / "m__ensemble" / "1").is_dir()
    assert with_folder != without


@pytest.mark.server
def test_soak_at_concurrency_64_has_no_errors_and_a_server_killed_mid_step_keeps_what_was_measured(
        triton_server_factory, tmp_path):
    """perf/soak.py's one long step (tests/test_perf_server.py covers a sweep killed between steps)."""
    import threading

    from perf.soak import build_tiny, run_soak

    spec, repo = build_tiny(tmp_path / "soak")
    server = triton_server_factory(repo)
    clean = run_soak(server.urls.grpc, spec.models[0], "tiny__onnx", requests=2000, concurrency=64,
                     warmup_requests=64)
    assert clean["errors"] == 0 and not clean["partial"] and clean["requests"] == 2000
    assert 0 < clean["p50_ms"] <= clean["p99_ms"]

    killer = threading.Timer(1.5, lambda: os.killpg(server.pid, signal.SIGKILL))
    killer.start()
    try:
        killed = run_soak(server.urls.grpc, spec.models[0], "tiny__onnx", requests=10**8, concurrency=8,
                          timeout_s=5.0, warmup_requests=8)
    finally:
        killer.cancel()
    assert killed["partial"] and "consecutive errors" in killed["aborted"]
    assert "UNAVAILABLE" in killed["aborted"] and "\n" not in killed["aborted"]
    assert killed["requests"] > 0 and killed["p99_ms"] is not None  # what was measured before the kill is kept
