"""Tiny spec builders for tests (importable as `specs`: pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def _register_tinymodels() -> None:
    """Make tests/models importable as `tinymodels`, the name specs use (one module object only:
    tiny.py registers a custom torch op, which must not be registered twice)."""
    import importlib.util
    import sys

    if "tinymodels" in sys.modules:
        return
    spec = importlib.util.spec_from_file_location(
        "tinymodels", ROOT / "tests" / "models" / "__init__.py",
        submodule_search_locations=[str(ROOT / "tests" / "models")])
    module = importlib.util.module_from_spec(spec)
    sys.modules["tinymodels"] = module
    spec.loader.exec_module(module)


_register_tinymodels()


def write_spec(folder: Path, data: dict, name: str = "spec.yaml") -> Path:
    """Write a spec into ``folder`` with the repo's examples/ and tests/models/ importable from it."""
    folder.mkdir(parents=True, exist_ok=True)
    for pkg in ("examples",):
        link = folder / pkg
        if not link.exists():
            link.symlink_to(ROOT / pkg)
    tm = folder / "tinymodels"
    if not tm.exists():
        tm.symlink_to(ROOT / "tests" / "models")
    p = folder / name
    p.write_text(yaml.safe_dump(data, sort_keys=False))
    return p


def vit_model(**over) -> dict:
    m = {
        "name": "vit",
        "source": {"factory": "examples.vit:vit_tiny"},
        "inputs": [{"name": "pixel_values", "dtype": "float32", "shape": [3, 32, 32]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}],
        "max_batch_size": 4,
        "variants": ["onnx"],
        "triton": {"dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 100}},
    }
    m.update(over)
    return m


def cnn_model(**over) -> dict:
    m = {
        "name": "cnn",
        "source": {"factory": "examples.cnn:small_cnn", "kwargs": {"width": 8}},
        "inputs": [{"name": "images", "dtype": "float32", "shape": [3, 16, 16]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}],
        "max_batch_size": 4,
        "variants": ["onnx"],
    }
    m.update(over)
    return m


def text_model(**over) -> dict:
    m = {
        "name": "text",
        "source": {"factory": "tinymodels.tiny:text_model"},
        "inputs": [
            {"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 50]},
            {"name": "attention_mask", "dtype": "int64", "shape": ["seq"], "range": [1, 2]},
        ],
        "outputs": [
            {"name": "pooled", "dtype": "float32", "shape": [16]},
            {"name": "token_logits", "dtype": "float32", "shape": ["seq", 5]},
        ],
        "dims": {"seq": [1, 8, 16]},
        "max_batch_size": 4,
        "variants": ["onnx"],
    }
    m.update(over)
    return m


def linear_model(**over) -> dict:
    m = {
        "name": "lin",
        "source": {"factory": "tinymodels.tiny:linear"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}],
        "max_batch_size": 4,
        "variants": ["onnx"],
    }
    m.update(over)
    return m
