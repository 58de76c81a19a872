"""Stage: verify a variant again with the runtime the target Triton release ships (generator/tables/releases.py).

ONNX Runtime and OpenVINO variants are verified in-process with our runtime (generator/stages/verify.py); the
target release serves them with its own, older one (24.10: onnxruntime 1.19.2, openvino 2024.4.0), and the
same INT8 artifact answers differently there. So each such variant is verified a second time, with the same
feeds, tolerance and gate, in a subprocess running that runtime: one venv per runtime version under the tools
folder (``$TRITONGEN_TOOLS``), installed once, atomically, under a lock; one subprocess per variant
(generator/stages/target_worker.py, the twin's own session code). A variant that passes on ours and fails on the
target's does not ship for that target. When the runtime cannot be installed (offline) or the release table
has no version for it, the result says so in one line and is recorded in the manifest; nothing is skipped
silently.

The results are cached beside the variant's build (``build/<model>/<variant>/target-<runtime>-<version>.json``)
and keyed by the variant's build key, so a cached variant is not verified again.

libtorch (the pytorch backend) is not re-verified: the only torch 2.5 on the registry is the 906 MB CUDA wheel
(plus its CUDA libraries), and the CPU wheels' index is not reachable here; TorchScript from torch 2.13 was
measured to load and answer on 24.10's libtorch 2.5.
"""

from __future__ import annotations

import io
import json
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np

from generator.errors import UserError
from generator.tables.releases import Release

RUNTIMES = ("onnxruntime", "openvino")
LIBTORCH_NOTE = ("libtorch {version} not verified here (PyPI's only torch 2.5 is the 906 MB CUDA wheel plus its CUDA "
                 "libraries; the CPU wheel index is not reachable); TorchScript from torch 2.13 was measured to load on "
                 "24.10's libtorch 2.5")
TARGET_NUMPY = "numpy==1.26.4"  # onnxruntime 1.19 / openvino 2024.4 predate numpy 2 (openvino pins numpy<2.1)


def env_dir(tools: Path, requirement: str) -> Path:
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    return tools / f"target-{requirement.replace('==', '-')}-py{pyver}"


def ensure_runtime_env(requirement: str, tools: Path | None = None) -> Path:
    """A venv with ``requirement`` (e.g. onnxruntime==1.19.2) + numpy 1.26; its python. UserError if it cannot
    be installed (its message is the one line the build reports)."""
    from generator.serve.tools import _install_atomically, _locked, _pip, tools_dir

    tools = Path(tools) if tools else tools_dir()
    root = env_dir(tools, requirement)
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"

    def build(tmp: Path) -> None:
        base = Path(getattr(sys, "_base_executable", sys.executable))
        proc = subprocess.run([str(base), "-m", "venv", "--without-pip", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"creating the {requirement} environment failed: {proc.stderr.strip()[-200:]}")
        site = tmp / "lib" / f"python{pyver}" / "site-packages"
        _pip(["install", "--no-compile", "--only-binary=:all:", "--target", str(site), requirement, TARGET_NUMPY],
             requirement, "check network access to the package registry")

    with _locked(tools):
        if not (root / ".complete").is_file():
            if root.exists():
                import shutil

                shutil.rmtree(root)
            _install_atomically(root, build)
    return root / "bin" / "python"


class TargetRunner:
    """feeds -> outputs through a worker subprocess running the target's runtime (a verify() ``run``)."""

    def __init__(self, python: Path, runtime: str, artifact: Path, inputs: list[str], outputs: list[str],
                 settings: dict[str, str]):
        from generator.serve import standalone_runtime_files

        worker = Path(__file__).resolve().parent / "target_worker.py"
        files = standalone_runtime_files()
        self.proc = subprocess.Popen([str(python), "-I", str(worker), str(files["runtimes"]), str(files["backends"])],
                                     stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        self._send(json.dumps({"runtime": runtime, "artifact": str(artifact), "inputs": inputs, "outputs": outputs,
                               "settings": settings}).encode())
        answer = json.loads(self._recv() or b'{"ok": false, "error": "the worker exited"}')
        if not answer.get("ok"):
            self.close()
            raise RuntimeError(answer.get("error") or self._stderr())
        self.version = answer.get("version")

    def _send(self, payload: bytes) -> None:
        self.proc.stdin.write(struct.pack(">Q", len(payload)) + payload)
        self.proc.stdin.flush()

    def _recv(self) -> bytes:
        head = self.proc.stdout.read(8)
        if len(head) < 8:
            return b""
        (n,) = struct.unpack(">Q", head)
        return self.proc.stdout.read(n)

    def _stderr(self) -> str:
        try:
            return " ".join((self.proc.stderr.read() or b"").decode(errors="replace").split())[-300:]
        except Exception:
            return ""

    def __call__(self, feeds: dict) -> dict:
        buf = io.BytesIO()
        np.savez(buf, **{k: np.asarray(v) for k, v in feeds.items()})
        self._send(buf.getvalue())
        frame = self._recv()
        if not frame:
            raise RuntimeError(f"the target runtime's worker died: {self._stderr() or 'no message'}")
        if frame[:1] == b"E":
            raise RuntimeError(frame[1:].decode(errors="replace"))
        with np.load(io.BytesIO(frame[1:])) as z:
            return {k: z[k] for k in z.files}

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self._send(b"")
                self.proc.wait(timeout=30)
            except Exception:
                self.proc.kill()
                self.proc.wait()


def session_settings(runtime: str, params: dict, level: str | None, options: dict) -> dict:
    """What the served config asks of the runtime (its native parameters, ORT's graph level) for the worker."""
    s = {k: str(v) for k, v in params.items() if v != ""}
    if runtime == "onnxruntime":
        s["graph_level"] = level or "all"
    elif runtime == "openvino":
        s["inference_precision"] = str(options.get("inference_precision", "f32")).lower()
        s.pop("RESHAPE_IO_LAYERS", None)  # verify feeds any batch: the IR's own dynamic shapes
    return s


def verify_on_target(release: Release, runtime: str, artifact: Path, model, settings: dict, reference, tol,
                     tools: Path | None = None) -> dict:
    """{"runtime", "version", "passed", "max_abs", "min_cosine", "task", "reason"} or {"unavailable": why}."""
    from generator.stages.verify import gate_reason, verify

    req = release.pip_requirement(runtime)
    if req is None:
        return {"runtime": runtime, "unavailable": f"Triton {release.name}'s {runtime} version is not in the release "
                                                   "table; verified with ours only"}
    try:
        python = ensure_runtime_env(req, tools)
    except UserError as e:
        return {"runtime": runtime, "requirement": req, "unavailable": f"{req} cannot be installed here ({e})"}
    try:
        run = TargetRunner(python, runtime, artifact, [t.name for t in model.inputs], [t.name for t in model.outputs],
                           settings)
    except RuntimeError as e:
        return {"runtime": runtime, "requirement": req, "passed": False,
                "reason": f"{req} cannot load {artifact.name}: {e}"}
    try:
        v = verify(run, reference, model, tol)
    finally:
        run.close()
    out = {"runtime": runtime, "requirement": req, "version": run.version, "passed": v.passed,
           "max_abs": v.max_abs, "min_cosine": v.min_cosine, "task": v.task}
    if not v.passed:
        out["reason"] = gate_reason(v)
    return out


def summary_line(result: dict, release: Release, ours: dict | None) -> str:
    """One line for the build log / report: ours vs the target's numbers."""
    if "unavailable" in result:
        return f"target {release.name}: {result['unavailable']}"
    mine = (ours or {}).get("max_abs")
    theirs = result.get("max_abs")
    nums = f"max |Δ| ours {mine:.3g} vs {result['requirement']} {theirs:.3g}" if mine is not None and theirs is not None else ""
    if result.get("passed"):
        return f"target {release.name}: passes on {result['requirement']} ({nums})"
    return (f"target {release.name}: passes on our runtime but fails on {result['requirement']}: "
            f"{result.get('reason', '?')}; not shipped for {release.name}" + (f" ({nums})" if nums else ""))
