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

from . import __version__

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

        from .errors import UserError

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
        (self.dir / STATE_FILE).write_text(json.dumps({"fingerprint": self.fingerprint()}) + "\n")
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


def file_entries(folder: Path) -> list[dict]:
    out = []
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h = hashlib.sha256()
            with open(p, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            out.append({"path": str(p.relative_to(folder)), "bytes": p.stat().st_size, "sha256": h.hexdigest()})
    return out


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    os.replace(tmp, path)
