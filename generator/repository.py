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


class Staging:
    """A repository being assembled beside ``out``; ``commit()`` swaps it in."""

    def __init__(self, out: Path, keep_existing_except: set[str] | None):
        self.out = Path(out).resolve()
        self.out.parent.mkdir(parents=True, exist_ok=True)
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

    def discard(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


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
