"""What lands on disk: a staged repository swapped in atomically, manifests and provenance.

The output folder is only ever replaced whole: the new repository is staged beside it
(``.<name>.staging-<pid>``) and renamed into place, so a failed build leaves the old one intact
and nothing half-written. Artifacts are hard-linked from the build cache where the filesystem allows.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from importlib import metadata
from pathlib import Path

from generator import __version__

STATE_FILE = ".tritongen-state.json"
TOOLS = ("torch", "onnx", "onnxruntime", "onnxslim", "onnxscript", "onnxconverter-common", "openvino",
         "polygraphy", "tensorrt", "numpy")


def tool_versions() -> dict[str, str]:
    out = {"tritongen": __version__}
    for name in TOOLS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def digest(*parts) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(json.dumps(p, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def link_or_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def copy_tree(src: Path, dst: Path) -> None:
    for p in sorted(src.rglob("*")):
        if p.is_file():
            link_or_copy(p, dst / p.relative_to(src))


class OutputLock:
    """One writer per output: an exclusive ``fcntl.flock`` on ``.<name>.lock`` beside it.

    The kernel drops the lock when its holder exits, ``kill -9`` included, so a lock is never stale.
    ``wait_s`` 0 fails at once with a UserError naming the holder's pid; otherwise it waits up to
    ``wait_s`` seconds, telling ``on_wait`` once. The holder removes the file on release, so nothing is left
    beside the output; ``acquire`` re-checks that the locked file is still the one at the path."""

    def __init__(self, out: Path, wait_s: float = 0.0, on_wait=None):
        self.out = Path(out)
        self.path = self.out.parent / f".{self.out.name}.lock"
        self.wait_s, self.on_wait = wait_s, on_wait
        self.fd: int | None = None

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip() or "?"
        except OSError:
            return "?"

    def acquire(self) -> "OutputLock":
        import fcntl
        import time

        from generator.errors import UserError

        deadline, told = time.monotonic() + self.wait_s, False
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                if time.monotonic() >= deadline:
                    waited = f" after waiting {self.wait_s:.0f} s" if self.wait_s > 0 else ""
                    raise UserError(f"{self.out}: another tritongen build (pid {self._holder()}) is writing it"
                                    f"{waited}; let it finish, or pass --wait-lock SECONDS to wait for it") from None
                if not told and self.on_wait is not None:
                    self.on_wait(f"waiting for the build holding {self.path} (pid {self._holder()}), "
                                 f"up to {self.wait_s:.0f} s")
                    told = True
                time.sleep(0.2)
                continue
            try:  # the holder before us removes the file on release: a lock on a removed file is no lock
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        if self.fd is not None:
            import fcntl

            try:
                os.unlink(self.path)  # while still holding it (see acquire); a killed holder leaves it: harmless
            except FileNotFoundError:
                pass
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None

    def __enter__(self) -> "OutputLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


class Staging:
    """A repository being assembled beside ``out``; ``commit()`` swaps it in.

    It holds ``OutputLock`` from creation to ``commit()`` / ``discard()``: two builds of one output never
    interleave. Under the lock it also cleans what a killed build left: stale staging folders, and a
    previous repository set aside by a commit that died between its two renames (put back in place)."""

    def __init__(self, out: Path, keep_existing_except: set[str] | None, lock_wait_s: float = 0.0,
                 on_wait=None):
        self.out = Path(out).resolve()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lock = OutputLock(self.out, lock_wait_s, on_wait).acquire()
        try:
            self._recover()
        except BaseException:
            self.lock.release()
            raise
        self.dir = self.out.parent / f".{self.out.name}.staging-{os.getpid()}"
        if self.dir.exists():
            shutil.rmtree(self.dir)
        self.dir.mkdir()
        self.validated: set[str] = set()  # model folders whose config was checked against their artifact
        if self.out.is_dir():
            readme = self.out / "README.md"
            if readme.is_file():
                shutil.copy2(readme, self.dir / "README.md")
            if keep_existing_except is not None:  # --only: keep the other models as they are
                for entry in self.out.iterdir():
                    if entry.is_dir() and entry.name not in keep_existing_except and not entry.name.startswith("."):
                        copy_tree(entry, self.dir / entry.name)

    def _recover(self) -> None:
        olds = sorted(self.out.parent.glob(f".{self.out.name}.old-*"), key=lambda p: p.stat().st_mtime)
        if olds and not self.out.exists():
            os.rename(olds.pop(), self.out)  # a commit was killed after setting the old repository aside
        for stale in [*olds, *self.out.parent.glob(f".{self.out.name}.staging-*")]:
            shutil.rmtree(stale, ignore_errors=True)

    def fingerprint(self) -> str:
        h = hashlib.sha256()
        for p in sorted(self.dir.rglob("*")):
            if p.is_file() and p.name != STATE_FILE:
                st = p.stat()
                h.update(str(p.relative_to(self.dir)).encode())
                # configs and manifests are small: hash content; artifacts: identity of the cached file
                if st.st_size < (1 << 20):
                    h.update(p.read_bytes())
                else:
                    h.update(f"{st.st_size}:{st.st_ino}:{int(st.st_mtime)}".encode())
        return h.hexdigest()

    def unchanged(self) -> bool:
        state = self.out / STATE_FILE
        if not state.is_file():
            return False
        try:
            return json.loads(state.read_text()).get("fingerprint") == self.fingerprint()
        except (OSError, ValueError):
            return False

    def commit(self) -> None:
        state = {"fingerprint": self.fingerprint(),
                 # model folders the build validated (config vs artifact): `tritongen validate` trusts these
                 # while their files are the same ones (same config text, sizes, mtimes, inodes)
                 "validated": {n: dir_identity(self.dir / n) for n in sorted(self.validated)
                               if (self.dir / n).is_dir()}}
        (self.dir / STATE_FILE).write_text(json.dumps(state) + "\n")
        old = self.out.parent / f".{self.out.name}.old-{os.getpid()}"
        if self.out.exists():
            os.rename(self.out, old)
        try:
            os.rename(self.dir, self.out)
        except OSError:
            if old.exists():
                os.rename(old, self.out)
            raise
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        self.lock.release()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self.lock.release()


def dir_identity(model_dir: Path) -> str:
    """A model folder's identity without reading its artifacts: config text, and each file's size,
    mtime and inode (not the bytecode a python-backend server compiles into ``__pycache__``)."""
    h = hashlib.sha256()
    cfg = model_dir / "config.pbtxt"
    h.update(cfg.read_bytes() if cfg.is_file() else b"")
    for p in sorted(model_dir.rglob("*")):
        if p.is_file() and p.name != "config.pbtxt" and "__pycache__" not in p.relative_to(model_dir).parts:
            st = p.stat()
            h.update(f"{p.relative_to(model_dir)}:{st.st_size}:{st.st_mtime_ns}:{st.st_ino}\0".encode())
    return h.hexdigest()


def validated_by_build(model_dir: Path) -> bool:
    """Whether the build that wrote this repository validated ``model_dir`` exactly as it is now."""
    state = model_dir.parent / STATE_FILE
    try:
        known = json.loads(state.read_text()).get("validated", {}).get(model_dir.name)
    except (OSError, ValueError, AttributeError):
        return False
    return known is not None and known == dir_identity(model_dir)


def sha256_path(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class HashCache:
    """sha256 of files, remembered by (device, inode) with (size, mtime_ns) in ``build/hashes.json``: a file
    whose size and mtime are unchanged is not read again (the checkpoint, artifacts hard-linked into the
    repository). Also remembers which (config, artifact hashes) passed validation."""

    VERSION = 1

    def __init__(self, path: Path | None):
        self.path = path
        self.files: dict[str, list] = {}
        self.validated: dict[str, bool] = {}
        self.used: set[str] = set()
        self.dirty = False
        if path is not None and path.is_file():
            try:
                data = json.loads(path.read_text())
                if data.get("version") == self.VERSION:
                    self.files, self.validated = data.get("files", {}), data.get("validated", {})
            except (OSError, ValueError, AttributeError):
                pass

    def sha256(self, path: Path) -> str:
        path = Path(path)
        st = path.stat()
        stamp = [st.st_size, st.st_mtime_ns, st.st_ino]
        key = f"{st.st_dev}:{st.st_ino}"  # by file, not path: a hard link in the staged repository is a hit
        self.used.add(key)
        hit = self.files.get(key)
        if hit and hit[:3] == stamp:
            return hit[3]
        digest_ = sha256_path(path)
        self.files[key] = stamp + [digest_]
        self.dirty = True
        return digest_

    def is_validated(self, key: str) -> bool:
        return self.validated.get(key, False)

    def mark_validated(self, key: str) -> None:
        if not self.validated.get(key):
            self.validated[key] = True
            self.dirty = True

    def save(self) -> None:
        if self.path is None or not self.dirty:
            return
        files = self.files
        if len(files) > 20000:  # keep it small: what this run used
            files = {k: v for k, v in files.items() if k in self.used}
        validated = dict(list(self.validated.items())[-20000:])
        write_json(self.path, {"version": self.VERSION, "files": files, "validated": validated})
        self.dirty = False


def file_entries(folder: Path, hashes: HashCache | None = None) -> list[dict]:
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            sha = hashes.sha256(p) if hashes is not None else sha256_path(p)
            out.append({"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": sha})
    return out


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)


def write_json_if_changed(path: Path, data) -> bool:
    """``write_json`` unless the file already holds exactly this (mtimes stay put on a no-op run)."""
    text = json.dumps(data, indent=2, sort_keys=True, default=str) + "\n"
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    write_json(path, data)
    return True
