"""INT8 on real pretrained checkpoints with real data (issues 9 and 21): EfficientNet-Lite0 (ImageNet weights)
on views of real photos with hand-checked labels, all-MiniLM-L6-v2 on real sentences -- all shipped in registry
packages (tests/models/real.py; installed by `make setup` into .venv/weights).

The classification gate is issue 21's, with its default thresholds (any user's): with labels, INT8 top-1 and
top-5 accuracy >= 0.99 x fp32's on the same samples; without, top-1 agreement >= 0.97 where fp32's top-1
probability >= 0.5 (at least 32 such samples). The data make pass and fail clear-cut on any CPU: the labelled
views are ones fp32 names right with probability 0.73-0.98, which good recipes never flipped (confident
agreement 1.0 on every good recipe measured, AVX2 U8U8, U8S8 + reduce_range, NNCF), while the broken recipes
lose far more than the 1% the gate allows (README "INT8" has the numbers). Nothing depends on the CPU: the
recipe search adapts to the ISA (reduce_range / U8U8 on CPUs without VNNI) and keeps the fastest passing recipe.

Slow for this suite (an export, a recipe search and a few verifications, ~3-5 min on 2 cores)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from generator.tables import isa
from generator.build.pipeline import build
from generator.spec import Tolerance, load_spec
from specs import write_spec

real = pytest.importorskip("tinymodels.real")
pytestmark = pytest.mark.skipif(real.available() is not None, reason=str(real.available()))

VIEWS = 32  # per labelled photo: 64 labelled samples


def _effnet(variants) -> dict:
    return {
        "name": "effnet",
        "source": {"factory": "tinymodels.real:efficientnet_lite0", "checkpoint": str(real.efficientnet_lite0_checkpoint())},
        "inputs": [{"name": "images", "dtype": "float32", "shape": [3, 224, 224]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [1000]}],
        "max_batch_size": 8,
        # whole images through the spec's preprocessing, as the server sees them (EfficientNet-Lite's normalisation)
        "preprocess": {"image": {"size": [224, 224], "mean": real.LITE_MEAN, "std": real.LITE_STD}},
        "calibration": {"data": "cal.npz", "samples": 32},
        "verify": {"task": "classification", "data": "val", "samples": 128},
        "variants": variants,
    }


@pytest.fixture(scope="module")
def effnet(tmp_path_factory):
    """One build of the good recipe (the search, default gate) on the labelled views; the other checks verify
    artifacts against the same gate without rebuilding."""
    d = tmp_path_factory.mktemp("effnet")
    np.savez(d / "cal.npz", images=real.photo_crops(32, 224, seed=1))  # crops of every photo: calibration only
    real.labelled_photos(d / "val", VIEWS, seed=2)
    real.unlabelled_photos(d / "unlabelled", {"camera.png": 20, "coffee.png": 20, **{t: 8 for t in real.TEXTURES}},
                           seed=3)
    spec = load_spec(write_spec(d, {"models": [_effnet(["onnx-int8"])]}))
    report = build(spec, d / "repo", d / "build")
    return d, spec, report.results[0]


def _manifest(repo, name) -> dict:
    return json.loads((repo / name / "manifest.json").read_text())


_MODULE = {}


def _reference(feeds, point):
    """PyTorch fp32, loaded once (the gate caches its outputs per verification set on this function)."""
    from generator.loading.inputs import torch_forward
    from generator.loading.source import load_module

    model, root = _MODULE["model"], _MODULE["root"]
    if "module" not in _MODULE:
        _MODULE["module"] = load_module(model, root)
    return torch_forward(_MODULE["module"], model, feeds, point)


def _gate(spec, onnx_path, **verify_over):
    """The default INT8 gate of ``onnx-int8`` for this spec (verify keys overridden), run on ``onnx_path``."""
    from generator.serve.runtimes import ort_runner
    from generator.variants import REGISTRY
    from generator.stages.verify import verify

    model = spec.models[0]
    _MODULE.update(model=model, root=spec.root)
    tol = Tolerance(**verify_over).over(REGISTRY["onnx-int8"].tolerance_for(model, model.variants[0]))
    return verify(ort_runner(onnx_path, ["logits"]), _reference, model, tol)


def _permuted(src, dst):
    """A deliberately broken INT8 model: the output channels of the last quantized Conv's weights (and bias)
    shuffled -- every later layer reads the wrong features."""
    import onnx
    from onnx import numpy_helper

    m = onnx.load(str(src))
    init = {i.name: i for i in m.graph.initializer}
    producer = {o: n for n in m.graph.node for o in n.output}
    conv = [n for n in m.graph.node if n.op_type == "Conv"][-1]
    perm = np.random.default_rng(0).permutation(numpy_helper.to_array(init[producer[conv.input[1]].input[0]]).shape[0])
    for t in conv.input[1:]:
        dq = producer.get(t)
        for name in (dq.input if dq is not None and dq.op_type == "DequantizeLinear" else [t]):
            a = numpy_helper.to_array(init[name]) if name in init else None
            if a is not None and a.ndim >= 1 and a.shape[0] == len(perm):
                init[name].CopyFrom(numpy_helper.from_array(a[perm], name))
    onnx.save(m, str(dst))
    return dst


def test_real_cnn_int8_keeps_fp32_accuracy_on_labelled_photos(effnet):
    d, _, r = effnet
    assert r.status == "built", r.reason
    m = _manifest(d / "repo", "effnet__onnx-int8")
    task = m["verification"]["task"]
    assert m["gate"] == "passed" and task["data"] == "verify.data" and task["samples"] == 2 * VIEWS
    acc = task["accuracy"]
    fp32, int8 = acc["top1"]["fp32"], acc["top1"]["variant"]
    assert acc["samples"] == 2 * VIEWS and fp32["correct"] == 2 * VIEWS  # fp32 names every labelled view right
    assert int8["correct"] >= 0.99 * fp32["correct"] and acc["top5"]["variant"]["correct"] >= 0.99 * acc["top5"]["fp32"]["correct"]
    assert fp32["ci95"][0] < fp32["accuracy"] <= fp32["ci95"][1] and "labelled" in task["gate"]
    attempts = m["info"]["attempts"]
    passing = [a for a in attempts if a["passed"]]
    assert passing and all(a["speed"]["ms"] > 0 and "seconds" in a for a in passing)
    assert m["info"]["recipe"] == min(passing, key=lambda a: a["speed"]["ms"])["recipe"]  # the fastest passing one
    assert all("top1_accuracy" in a["metrics"] for a in attempts)
    assert m["isa"]["class"] == isa.isa_class()
    log = (d / "build" / "effnet" / "onnx-int8" / "build.log").read_text()
    assert log.count("recipe ") >= len(attempts) and "kept [" in log


def test_int8_with_permuted_weights_fails_both_gates(effnet, tmp_path):
    d, spec, r = effnet
    assert r.status == "built", r.reason
    broken = _permuted(d / "repo" / "effnet__onnx-int8" / "1" / "model.onnx", tmp_path / "broken.onnx")
    v = _gate(spec, broken)
    acc = v.task["accuracy"]["top1"]
    assert not v.passed and any(f.startswith("accuracy: top1") for f in v.failed)
    assert acc["variant"]["correct"] < 0.8 * acc["fp32"]["correct"]  # far below the 0.99 the gate asks
    v = _gate(spec, broken, data=d / "unlabelled")
    assert not v.passed and v.task["confident"] >= 32 and v.task["confident_agreement"] < 0.8


def test_real_cnn_int8_agrees_where_fp32_is_confident_without_labels(effnet):
    """Views of the two photos plus textures fp32 is unsure of: only the confident samples count."""
    d, spec, r = effnet
    assert r.status == "built", r.reason
    v = _gate(spec, d / "repo" / "effnet__onnx-int8" / "1" / "model.onnx", data=d / "unlabelled")
    t = v.task
    assert v.passed, v.failed or v.error
    assert "accuracy" not in t and t["samples"] == 64 and 32 <= t["confident"] <= 40
    assert t["confident_agreement"] >= 0.97 and "top-1 probability >= 0.5" in t["gate"]


def test_activations_quantized_before_relu6_fail_the_accuracy_gate(effnet, tmp_path):
    """Conv outputs quantized over their whole range before ReLU6 (Relu/Clip not folded: ~8 levels left in
    [0, 6]), on the labelled views plus Grace Hopper's (where fp32 itself is unsure). Measured on AVX2: top-1
    47/72 vs fp32 56/72, top-5 56/72 vs 66/72 -- nine samples below the 1% the gate allows."""
    from generator.stages import quantize as q
    from generator.loading.calibration import calibration_samples

    d, spec, r = effnet
    real.labelled_photos(tmp_path / "val3", 24, seed=2, labels={**real.LABELLED, **real.UNSURE})
    model = spec.models[0]
    src = d / "build" / "effnet" / "export" / "optimized" / "model.onnx"
    out = tmp_path / "relu6.onnx"
    q.quantize_static_onnx(src, out, calibration_samples(model, spec.root, print), op_types=["Conv", "Gemm", "MatMul"],
                           per_channel=True, **{k: v for k, v in isa.quantization_defaults(static=True).items()
                                                if k in ("reduce_range", "weight_type")})
    v = _gate(spec, out, data=tmp_path / "val3")
    acc = v.task["accuracy"]["top1"]
    assert v.task["accuracy"]["samples"] == 72 and not v.passed
    assert acc["variant"]["correct"] <= 0.95 * acc["fp32"]["correct"]


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
    assert any(a["passed"] for a in m["info"]["attempts"])
    log = (tmp_path / "build" / "minilm" / "onnx-int8" / "build.log").read_text()
    assert log.count("recipe ") >= len(m["info"]["attempts"])


def test_real_photos_and_sentences_are_real(tmp_path):
    """The data the tests calibrate and verify on: real photos (not noise), labelled views in class folders, and
    real English sentences."""
    crops = real.photo_crops(4, 64, seed=0)
    assert crops.shape == (4, 3, 64, 64) and 0.05 < crops.std() < 2.0
    # neighbouring pixels of a photo are correlated; of noise they are not
    a, b = crops[:, :, :, :-1].ravel(), crops[:, :, :, 1:].ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.8
    folders = real.labelled_photos(tmp_path / "val", 2, seed=0)
    assert folders == {"872_camera": 872, "967_coffee": 967}
    assert sorted(p.name for p in (tmp_path / "val" / "872_camera").iterdir()) == ["000.png", "001.png"]
    s = real.sentences()
    assert len(s) >= 90 and all(len(x.split()) >= 2 for x in s) and len(set(s)) == len(s)
