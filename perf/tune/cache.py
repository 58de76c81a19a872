"""Measurements by configuration hash, kept in ``<run dir>/cache.json``: a killed run, re-run with the same
``--out``, measures only what is missing."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

from .measure import Measurement

class Cache:
    """Measurements by configuration hash, written after every measurement (a killed run resumes)."""

    def __init__(self, path: Path):
        self.path = path
        self.data: dict[str, dict] = {}
        if path.is_file():
            try:
                self.data = json.loads(path.read_text()).get("measurements", {})
            except (OSError, ValueError):
                self.data = {}
        self.reused = 0
        self.measured = 0

    def get(self, key: str) -> Measurement | None:
        d = self.data.get(key)
        return Measurement(**d) if d else None

    def put(self, m: Measurement) -> None:
        self.data[m.key] = asdict(m)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps({"measurements": self.data}, indent=1, sort_keys=True))
        os.replace(tmp, self.path)

