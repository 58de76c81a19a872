"""What lands on disk: a staged repository swapped in atomically, manifests and provenance.

The output folder is only ever replaced whole: the new repository is staged beside it
(``.<name>.staging-<pid>``) and renamed into place, so a failed build leaves the old one intact
and nothing half-written. Artifacts are hard-linked from the build cache where the filesystem allows.
"""

from __future__ import annotations

import hashlib
import json
import math
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
    """Files linked (or copied), folders made: an empty one too (an ensemble's version folder ``1/``)."""
    for p in sorted(src.rglob("*")):
        if p.is_file():
            link_or_copy(p, dst / p.relative_to(src))
        elif p.is_dir():
            (dst / p.relative_to(src)).mkdir(parents=True, exist_ok=True)


def check_output(out: Path, build_dir: Path | None = None, spec_root: Path | None = None) -> None:
    """Refuse an output that replacing would lose something: a file, a folder holding what no model repository
    holds (a user's folder), or a build folder inside it (wiped by each build). A repository tritongen wrote, an
    empty folder, or one of model folders (each with config.pbtxt, or a version folder) is replaced."""
    from generator.errors import UserError

    out = Path(out)
    if spec_root is not None and (out == spec_root or out in spec_root.parents):
        raise UserError(f"-o {out}: would replace the folder holding the spec; choose a dedicated output folder")
    if build_dir is not None and Path(build_dir).exists() and not Path(build_dir).is_dir():
        raise UserError(f"--build-dir {build_dir}: is a file, not a folder; choose a folder for the build cache")
    if out.exists() and not out.is_dir():
        raise UserError(f"-o {out}: is a file, not a folder; choose a folder for the model repository")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"-o {out}: {parent} is a file; choose a folder for the model repository")
            if not os.access(parent, os.W_OK | os.X_OK):
                raise UserError(f"-o {out}: {parent} is not writable; choose a writable place for the repository")
            break
    if build_dir is not None and (Path(build_dir) == out or out in Path(build_dir).parents):
        raise UserError(f"--build-dir {build_dir}: inside -o {out}, which each build replaces (the cache would go "
                        "with it); put the build folder outside the repository")
    if out.is_dir() and not (out / STATE_FILE).is_file():
        foreign = [p.name for p in sorted(out.iterdir())
                   if not p.name.startswith(".") and p.name != "README.md"
                   and not (p.is_dir() and ((p / "config.pbtxt").is_file() or any(c.name.isdigit() for c in p.iterdir())))]
        if foreign:
            raise UserError(f"-o {out}: holds {foreign[0]!r}, which is not a model folder, and tritongen replaces the "
                            "whole folder; choose a new or empty folder (or remove what is not a model repository)")


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
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError as e:
                raise UserError(f"-o {self.out}: cannot write beside it ({e.strerror or type(e).__name__}: {self.path}); "
                                "choose a writable place for the repository") from None
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
                 on_wait=None, cache: Path | None = None):
        self.out = Path(out).resolve()
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.lock = OutputLock(self.out, lock_wait_s, on_wait).acquire()
        self.cache_lock = None  # ``cache``: the build folder, one build at a time too (its tmp folders are shared)
        try:
            if cache is not None:
                Path(cache).parent.mkdir(parents=True, exist_ok=True)
                self.cache_lock = OutputLock(Path(cache), lock_wait_s, on_wait).acquire()
            self._recover()
        except BaseException:
            self._release()
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
            if p.is_dir():  # an empty folder counts (an ensemble's version folder)
                h.update(f"{p.relative_to(self.dir)}/".encode())
            elif p.is_file() and p.name != STATE_FILE:
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
        # what the user keeps in the folder beside the models (.git, .gitattributes, .dvc) moves into the new one
        keep = [e.name for e in self.out.iterdir() if e.name.startswith(".") and e.name != STATE_FILE
                and not (self.dir / e.name).exists()] if self.out.is_dir() else []
        moved = []
        try:
            for name in keep:
                os.rename(self.out / name, self.dir / name)
                moved.append(name)
            if self.out.exists():
                os.rename(self.out, old)
            os.rename(self.dir, self.out)
        except OSError as e:
            if old.exists() and not self.out.exists():
                os.rename(old, self.out)
            for name in moved:  # back where they were before the staging folder goes
                if (self.dir / name).exists() and self.out.is_dir():
                    os.rename(self.dir / name, self.out / name)
            self.discard()
            from generator.errors import UserError

            raise UserError(f"-o {self.out}: cannot replace it ({e.strerror or type(e).__name__}); check its "
                            "permissions (and its folder's): the previous repository is unchanged") from None
        if old.exists():
            shutil.rmtree(old, ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self.cache_lock is not None:
            self.cache_lock.release()
        self.lock.release()

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        self._release()


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


def _strict(data):
    """JSON has no NaN or Infinity (``json.dumps`` writes them bare, which strict readers refuse): as strings."""
    if isinstance(data, float) and not math.isfinite(data):
        return str(data)
    if isinstance(data, dict):
        return {k: _strict(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_strict(v) for v in data]
    return data


def _dumps(data) -> str:
    return json.dumps(_strict(data), indent=2, sort_keys=True, default=str) + "\n"


def read_json(path: Path) -> dict:
    """A cache file's JSON; {} when it is missing or unreadable (a corrupt stamp only means: rebuild)."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(_dumps(data))
    os.replace(tmp, path)


def write_json_if_changed(path: Path, data) -> bool:
    """``write_json`` unless the file already holds exactly this (mtimes stay put on a no-op run)."""
    text = _dumps(data)
    try:
        if path.read_text() == text:
            return False
    except OSError:
        pass
    write_json(path, data)
    return True
