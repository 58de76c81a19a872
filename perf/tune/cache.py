"""Measurements by configuration hash, kept in ``<run dir>/cache.json``: a killed run, re-run with the same
``--out``, measures only what is missing."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from .measure import Measurement

class Cache:
    """Measurements by configuration hash, and the variants' in-process ceilings, written after every
    measurement (a killed run resumes; a resumed run prunes on the same ceilings, so it takes the same path)."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, dict] = {}
        self.ceilings: dict[str, float | None] = {}
        if path.is_file():
            try:
                got = json.loads(path.read_text())
                self.data, self.ceilings = got.get("measurements", {}), got.get("ceilings", {})
            except (OSError, ValueError, AttributeError):
                self.data, self.ceilings = {}, {}
        self.reused = 0
        self.measured = 0

    def get(self, key: str) -> Measurement | None:
        d = self.data.get(key)
        return Measurement(**d) if d else None

    def put(self, m: Measurement) -> None:
        self.data[m.key] = asdict(m)
        self._write()

    def ceiling(self, key: str) -> tuple[bool, float | None]:
        """(known, throughput) of an in-process ceiling measured by an earlier run in this folder."""
        return (key in self.ceilings, self.ceilings.get(key))

    def put_ceiling(self, key: str, value: float | None) -> None:
        self.ceilings[key] = value
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"measurements": self.data, "ceilings": self.ceilings}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)
