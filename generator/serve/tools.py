"""External tools tritongen runs: a real ``tritonserver`` and ``perf_analyzer``.

Both are installed on first use into a project-local folder (``.tools/`` at the repository root, or
``$TRITONGEN_TOOLS``) with no manual step, and reused afterwards:

- ``tritonserver`` 2.51 with the python backend, from the ``nvidia-pytriton==0.7.0`` wheel (installed
  ``--no-deps`` into its own folder: the wheel pins numpy<2, our venv does not). The python backend stub
  runs *this* interpreter's venv (its ``bin`` first on PATH, Python's LIBDIR on LD_LIBRARY_PATH), so
  served runners see our onnxruntime/torch/openvino. numpy 2 trap: runners must move tensors by DLPack.
- ``perf_analyzer`` 2.51 from the ``tritonclient==2.51.0`` manylinux1 wheel (the ``perf-analyzer`` wheels
  need glibc 2.38). It needs ``libb64.so.0d`` and ``libcudart.so.12``: the copies bundled in the pytriton
  wheel are linked under those names into ``.tools/perf_analyzer-2.51.0/lib``.

Every install goes to a temporary folder beside its final place and is renamed into place when complete,
so an interrupted install never leaves a half-installed tool. A lock file serialises concurrent installs.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from generator.errors import UserError

PYTRITON_VERSION = "0.7.0"
TRITONSERVER_VERSION = "2.51.0"  # the tritonserver inside nvidia-pytriton 0.7.0
PERF_ANALYZER_VERSION = "2.51.0"  # from tritonclient==2.51.0's manylinux1 wheel

_PYTRITON_DIR = f"pytriton-{PYTRITON_VERSION}"
_PERF_DIR = f"perf_analyzer-{PERF_ANALYZER_VERSION}"
_STUB = "triton_python_backend_stub"


@dataclass(frozen=True)
class TritonInstall:
    """A runnable tritonserver: ``subprocess.Popen([binary, ...], env=env)``."""

    binary: Path
    backend_dir: Path  # pass as --backend-directory
    env: dict[str, str] = field(repr=False)  # full environment to run it with
    root: Path  # the install folder
    version: str = TRITONSERVER_VERSION


@dataclass(frozen=True)
class PerfAnalyzerInstall:
    """A runnable perf_analyzer: ``subprocess.run([binary, ...], env=env)``."""

    binary: Path
    env: dict[str, str] = field(repr=False)
    lib_dir: Path
    version: str = PERF_ANALYZER_VERSION

    def __fspath__(self) -> str:  # usable where a path is expected
        return str(self.binary)


def tools_dir() -> Path:
    """``$TRITONGEN_TOOLS`` if set, else ``.tools/`` at the repository root."""
    env = os.environ.get("TRITONGEN_TOOLS")
    if env:
        return Path(env).expanduser().resolve()
    return Path(__file__).resolve().parents[2] / ".tools"


# ---------------------------------------------------------------------------------------------- helpers


@contextmanager
def _locked(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pip(args: list[str], what: str, fix: str) -> None:
    cmd = [sys.executable, "-m", "pip", "--disable-pip-version-check", *args]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        lines = [ln.strip() for ln in (proc.stderr or proc.stdout).splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit status {proc.returncode}"
        raise UserError(f"installing {what} failed: `{' '.join(cmd[1:])}`: {last}; {fix}")


def _install_atomically(final: Path, build) -> None:
    """Run ``build(tmp_dir)``, then rename ``tmp_dir`` to ``final``; nothing is left behind on failure."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    tmp.chmod(0o755)
    try:
        build(tmp)
        (tmp / ".complete").write_text("ok\n")
        tmp.rename(final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _prepend(env: dict[str, str], key: str, *paths: os.PathLike | str) -> None:
    parts = [str(p) for p in paths if p]
    if env.get(key):
        parts.append(env[key])
    env[key] = os.pathsep.join(parts)


def _python_env() -> dict[str, str]:
    """This interpreter's venv first: the python backend stub takes ``python3`` from PATH."""
    env = dict(os.environ)
    venv_bin = Path(sys.executable).parent  # not resolved: the venv's bin, not the base interpreter's
    _prepend(env, "PATH", venv_bin)
    libdir = sysconfig.get_config_var("LIBDIR")
    if libdir:
        _prepend(env, "LD_LIBRARY_PATH", libdir)
    if sys.prefix != sys.base_prefix:
        env["VIRTUAL_ENV"] = sys.prefix
    env.pop("PYTHONHOME", None)
    return env


# ----------------------------------------------------------------------------------------- tritonserver


def _pytriton_root(tools: Path) -> Path:
    return tools / _PYTRITON_DIR


def ensure_tritonserver(tools: Path | None = None) -> TritonInstall:
    """Install (once) and return a real tritonserver with the python backend for this interpreter."""
    tools = Path(tools) if tools else tools_dir()
    root = _pytriton_root(tools)
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"

    def build(tmp: Path) -> None:
        _pip(
            ["install", "--no-deps", "--no-compile", "--target", str(tmp), f"nvidia-pytriton=={PYTRITON_VERSION}"],
            f"nvidia-pytriton=={PYTRITON_VERSION} (tritonserver {TRITONSERVER_VERSION})",
            "check network access to the package registry, or set TRITONGEN_TOOLS to a folder that holds it",
        )
        ts = tmp / "pytriton" / "tritonserver"
        stub = ts / "python_backend_stubs" / pyver / _STUB
        if not stub.is_file():
            have = sorted(p.name for p in (ts / "python_backend_stubs").iterdir())
            raise UserError(
                f"nvidia-pytriton=={PYTRITON_VERSION} has no python backend stub for Python {pyver} "
                f"(has {', '.join(have)}); run tritongen with one of those Python versions"
            )
        dst = ts / "backends" / "python" / _STUB
        shutil.copy2(stub, dst)
        dst.chmod(0o755)
        (ts / "bin" / "tritonserver").chmod(0o755)

    with _locked(tools):
        if not (root / ".complete").is_file():
            if root.exists():
                shutil.rmtree(root)
            _install_atomically(root, build)
        # A stub for another Python (tools dir shared between interpreters): swap it in.
        ts = root / "pytriton" / "tritonserver"
        stub_src = ts / "python_backend_stubs" / pyver / _STUB
        stub_dst = ts / "backends" / "python" / _STUB
        marker = ts / "backends" / "python" / ".stub_python"
        if not marker.is_file() or marker.read_text().strip() != pyver:
            if not stub_src.is_file():
                raise UserError(f"tritonserver's python backend has no stub for Python {pyver}; use Python 3.8-3.13")
            shutil.copy2(stub_src, stub_dst)
            stub_dst.chmod(0o755)
            marker.write_text(pyver + "\n")

    return TritonInstall(
        binary=ts / "bin" / "tritonserver",
        backend_dir=ts / "backends",
        env=_python_env(),
        root=root,
    )


# ---------------------------------------------------------------------------------------- perf_analyzer


def _find_lib(libs: Path, stem: str) -> Path:
    """The bundled (auditwheel-renamed) library, e.g. ``libb64-98cb6333.so.0d`` for stem ``libb64``."""
    hits = sorted(libs.glob(f"{stem}-*.so*"))
    if not hits:
        raise UserError(f"{libs} has no {stem} library; delete {libs.parent} and run again to reinstall")
    return hits[0]


def ensure_perf_analyzer(tools: Path | None = None) -> PerfAnalyzerInstall:
    """Install (once), verify and return perf_analyzer 2.51.0 (binary + environment to run it with)."""
    tools = Path(tools) if tools else tools_dir()
    triton = ensure_tritonserver(tools)  # its wheel bundles libb64 and libcudart
    root = tools / _PERF_DIR
    bundled = triton.root / "nvidia_pytriton.libs"

    def build(tmp: Path) -> None:
        dl = tmp / "download"
        _pip(
            ["download", "--no-deps", "--only-binary=:all:", "--platform", "manylinux1_x86_64",
             "--python-version", "3", "--implementation", "py", "-d", str(dl),
             f"tritonclient=={PERF_ANALYZER_VERSION}"],
            f"tritonclient=={PERF_ANALYZER_VERSION} (perf_analyzer)",
            "check network access to the package registry",
        )
        wheels = list(dl.glob("tritonclient-*.whl"))
        if not wheels:
            raise UserError(f"pip downloaded no tritonclient wheel into {dl}; retry, or delete {tools}")
        member = f"tritonclient-{PERF_ANALYZER_VERSION}.data/data/bin/perf_analyzer"
        (tmp / "bin").mkdir()
        with zipfile.ZipFile(wheels[0]) as zf:
            try:
                data = zf.read(member)
            except KeyError:
                raise UserError(f"{wheels[0].name} has no {member}; delete {tools} and run again") from None
        binary = tmp / "bin" / "perf_analyzer"
        binary.write_bytes(data)
        binary.chmod(0o755)
        shutil.rmtree(dl)
        lib = tmp / "lib"
        lib.mkdir()
        # Relative links (tmp is a sibling of the final folder, so they resolve the same from both),
        # so the whole tools folder can move.
        for name, stem in (("libb64.so.0d", "libb64"), ("libcudart.so.12", "libcudart")):
            target = _find_lib(bundled, stem)
            os.symlink(os.path.relpath(target, lib), lib / name)
        _verify_perf_analyzer(binary, _perf_env(lib))

    with _locked(tools):
        if not (root / ".complete").is_file():
            if root.exists():
                shutil.rmtree(root)
            _install_atomically(root, build)

    lib = root / "lib"
    env = _perf_env(lib)
    return PerfAnalyzerInstall(binary=root / "bin" / "perf_analyzer", env=env, lib_dir=lib)


def _perf_env(lib: Path) -> dict[str, str]:
    env = dict(os.environ)
    _prepend(env, "LD_LIBRARY_PATH", lib)
    return env


def _verify_perf_analyzer(binary: Path, env: dict[str, str]) -> None:
    proc = subprocess.run([str(binary), "--version"], capture_output=True, text=True, env=env, timeout=60)
    out = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or "Perf Analyzer" not in out:
        tail = out.splitlines()[-1] if out else f"exit status {proc.returncode}"
        raise UserError(f"perf_analyzer {PERF_ANALYZER_VERSION} does not run here: {tail}; it needs glibc >= 2.28")


def perf_analyzer_version(pa: PerfAnalyzerInstall) -> str:
    proc = subprocess.run([str(pa.binary), "--version"], capture_output=True, text=True, env=pa.env, timeout=60)
    return (proc.stdout + proc.stderr).strip()


# ------------------------------------------------------------------------------ the python stub's numpy<2 env

STUB_ENV_NUMPY = "1.26.4"  # the python backend stub of tritonserver 2.51 is built against numpy 1.x
STUB_ENV_PACKAGES = (f"numpy=={STUB_ENV_NUMPY}", "tokenizers==0.23.3", "pillow==13.0.0")  # pillow: image bytes


def ensure_stub_env(tools: Path | None = None) -> Path:
    """A small venv (numpy<2 + tokenizers + Pillow) for python-backend models that move strings (TYPE_STRING).

    tritonserver 2.51's python backend stub reads and writes tensors through numpy's C API as of numpy 1.x:
    under numpy 2 (our venv) ``as_numpy()`` on a TYPE_STRING input is garbage and string outputs arrive empty.
    Models that need strings (the text tokenizer) point ``EXECUTION_ENV_PATH`` at this folder (the stub accepts
    an unpacked environment: it sources ``bin/activate`` and runs that Python). Same Python version as ours,
    so the stub installed for this interpreter matches. Installed once, atomically, into ``.tools/``."""
    tools = Path(tools) if tools else tools_dir()
    pyver = f"{sys.version_info.major}.{sys.version_info.minor}"
    root = tools / f"stub-env-py{pyver}-numpy{STUB_ENV_NUMPY}-pillow"

    def build(tmp: Path) -> None:
        base = Path(getattr(sys, "_base_executable", sys.executable))
        proc = subprocess.run([str(base), "-m", "venv", "--without-pip", str(tmp)], capture_output=True, text=True)
        if proc.returncode != 0:
            raise UserError(f"creating the stub environment failed: {proc.stderr.strip()[-200:]}; "
                            "is Python's venv module installed (python3-venv)?")
        site = tmp / "lib" / f"python{pyver}" / "site-packages"
        _pip(["install", "--no-deps", "--no-compile", "--target", str(site), *STUB_ENV_PACKAGES],
             f"the python stub's environment ({', '.join(STUB_ENV_PACKAGES)})",
             "check network access to the package registry")
        for script in (tmp / "bin").glob("activate*"):  # venv writes its own path in: the final one
            script.write_text(script.read_text().replace(str(tmp), str(root)))

    with _locked(tools):
        if not (root / ".complete").is_file():
            if root.exists():
                shutil.rmtree(root)
            _install_atomically(root, build)
    return root
