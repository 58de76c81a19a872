"""The INT8 levers of issue 22 as options: ONNX Runtime's transformer fusions before quantizing (``fusion``) and
the static quantizer's operator form (``quant_format``), on a tiny ViT exported like the example's.

Tolerances are stated against the model's own fp32 numbers, not tuned to one CPU: the fusions only regroup
fp32 arithmetic (LayerNorm + residual Add -> SkipLayerNormalization, bias + Gelu -> BiasGelu), so the fused fp32
graph must agree with PyTorch to fp32 rounding (1e-4 on logits of magnitude ~1), and quantizing the fused graph
must not cost accuracy: its INT8 error vs PyTorch stays within 1.5x the unfused INT8 model's (+1e-3), whatever
the CPU's INT8 kernels are (VNNI or not; they round the same way for both graphs). Speed is measured in
perf/levers.py, never asserted here."""

from __future__ import annotations

import json
from collections import Counter

import numpy as np
import onnx
import pytest
import torch

from generator.stages import quantize as q
from generator.build.pipeline import build
from generator.serve.runtimes import ort_session
from generator.spec import load_spec
from specs import cnn_model, vit_model, write_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def tiny_vit(tmp_path_factory):
    """examples.vit.vit_tiny exported with torch's dynamo exporter (as generator/stages/export.py does), its inputs and
    PyTorch's logits."""
    from examples.vit import vit_tiny

    d = tmp_path_factory.mktemp("tinyvit")
    m = vit_tiny()
    x = np.random.default_rng(3).standard_normal((4, 3, 32, 32)).astype(np.float32)
    raw = d / "raw.onnx"
    torch.onnx.export(m, (torch.from_numpy(x[:2]),), str(raw), dynamo=True, input_names=["pixel_values"],
                      output_names=["logits"], dynamic_shapes={"pixel_values": {0: torch.export.Dim("batch")}})
    src = d / "model.onnx"
    onnx.save(onnx.load(str(raw)), str(src))
    with torch.inference_mode():
        ref = m(torch.from_numpy(x)).numpy()
    return d, src, x, ref


def _run(path, x):
    return ort_session(path, level="all").run(None, {"pixel_values": x})[0]


def _ops(path) -> Counter:
    return Counter(n.op_type for n in onnx.load(str(path)).graph.node)


def test_auto_fuses_transformers_only(tiny_vit, tmp_path):
    _, src, _, _ = tiny_vit
    nodes = q.graph_nodes(src)
    assert q.wants_fusion(nodes, "auto") and q.wants_fusion(nodes, "transformer")
    assert not q.wants_fusion(nodes, "none")
    conv_only = [("c", "Conv"), ("r", "Relu"), ("g", "Gemm"), ("s", "Softmax")]  # a CNN with a softmax head
    assert not q.wants_fusion(conv_only, "auto") and q.wants_fusion(conv_only, "transformer")


def test_fusion_keeps_fp32_and_quantizing_the_fused_graph_costs_no_accuracy(tiny_vit):
    d, src, x, ref = tiny_vit
    fused = d / "fused.onnx"
    info = q.fuse_transformer(src, fused, text=False)
    assert info["model_type"] == "vit"
    # depth 2: two LayerNorm+Add pairs per block and one bias+Gelu per block are fused
    assert info["fused"].get("SkipLayerNormalization", 0) >= 2 and info["fused"].get("BiasGelu", 0) == 2, info
    ops = _ops(fused)
    assert ops["SkipLayerNormalization"] >= 2 and "Gelu" not in ops
    np.testing.assert_allclose(_run(fused, x), ref, atol=1e-4, rtol=1e-4)

    def err(path):
        return float(np.abs(_run(path, x) - ref).max())

    rng = np.random.default_rng(11)
    samples = [{"pixel_values": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(8)]
    for name, make in [
        ("dynamic", lambda s, o: q.quantize_dynamic_onnx(s, o, reduce_range=True)),
        ("static", lambda s, o: q.quantize_static_onnx(s, o, samples, per_channel=True, weight_type="int8")),
    ]:
        plain, fz = d / f"{name}_plain.onnx", d / f"{name}_fused.onnx"
        make(src, plain)
        make(fused, fz)
        assert _ops(fz)["SkipLayerNormalization"] >= 2  # the fused ops survive quantization
        e_plain, e_fused = err(plain), err(fz)
        assert 0 < e_plain and e_fused <= 1.5 * e_plain + 1e-3, (name, e_plain, e_fused)
        cos = float(np.sum(_run(fz, x) * ref) / (np.linalg.norm(_run(fz, x)) * np.linalg.norm(ref)))
        assert cos > 0.9, (name, cos)  # a working quantizer on any x86 CPU (the gate's catastrophe floor)


def test_qoperator_writes_qlinear_ops_and_answers_like_qdq(tiny_vit):
    d, src, x, ref = tiny_vit
    rng = np.random.default_rng(12)
    samples = [{"pixel_values": rng.standard_normal((1, 3, 32, 32)).astype(np.float32)} for _ in range(8)]
    qdq, qop = d / "qdq.onnx", d / "qop.onnx"
    info = q.quantize_static_onnx(src, qop, samples, per_channel=True, weight_type="int8", quant_format="qoperator")
    q.quantize_static_onnx(src, qdq, samples, per_channel=True, weight_type="int8")
    assert info["quant_format"] == "qoperator"
    assert _ops(qop)["QLinearMatMul"] >= 2 and _ops(qdq)["QLinearMatMul"] == 0 and _ops(qdq)["DequantizeLinear"] > 0
    # the same scales and zero points, two spellings: ONNX Runtime turns QDQ pairs into the same QLinear kernels
    e_qdq, e_qop = (float(np.abs(_run(p, x) - ref).max()) for p in (qdq, qop))
    assert e_qop <= 1.5 * e_qdq + 1e-3, (e_qdq, e_qop)


def test_int8_variants_build_with_fusion_and_qoperator_on_a_tiny_vit(workdir):
    variants = [
        {"name": "onnx-int8-dynamic", "options": {"fusion": "transformer"}},
        {"name": "onnx-int8", "options": {"fusion": "auto", "quant_format": "qoperator", "search": False}},
    ]
    spec = load_spec(write_spec(workdir, {"models": [vit_model(variants=variants)]}))
    report = build(spec, workdir / "repo", workdir / "build")
    assert [r.status for r in report.results] == ["built", "built"], [r.reason for r in report.results]
    from examples.vit import vit_tiny

    x = np.random.default_rng(5).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = vit_tiny()(torch.from_numpy(x)).numpy()
    for key, expect in (("onnx-int8-dynamic", "DynamicQuantizeMatMul"), ("onnx-int8", "QLinearMatMul")):
        d = workdir / "repo" / f"vit__{key}"
        man = json.loads((d / "manifest.json").read_text())
        fusion = man["info"]["fusion"]
        assert fusion["applied"] and fusion["fused"].get("SkipLayerNormalization", 0) >= 2, fusion
        ops = _ops(d / "1" / "model.onnx")
        assert ops["SkipLayerNormalization"] >= 2, ops
        sess = ort_session(d / "1" / "model.onnx", level="all", optimized_out=workdir / f"{key}.opt.onnx")
        assert _ops(workdir / f"{key}.opt.onnx")[expect] >= 2  # what ONNX Runtime runs
        got = sess.run(None, {"pixel_values": x})[0]
        cos = float(np.sum(got * ref) / (np.linalg.norm(got) * np.linalg.norm(ref)))
        assert cos > 0.9, (key, cos)
    assert "optimize_model" in (workdir / "build" / "vit" / "onnx-int8" / "reproduce.sh").read_text()
    assert "QuantFormat.QOperator" in (workdir / "build" / "vit" / "onnx-int8" / "reproduce.sh").read_text()


def test_fusion_auto_leaves_a_cnn_alone(workdir):
    spec = load_spec(write_spec(workdir, {"models": [cnn_model(variants=[
        {"name": "onnx-int8-dynamic", "options": {"fusion": "auto"}}])]}))
    r = build(spec, workdir / "repo", workdir / "build").results[0]
    assert r.status == "built", r.reason
    man = json.loads((workdir / "repo" / "cnn__onnx-int8-dynamic" / "manifest.json").read_text())
    assert man["info"]["fusion"] == {"applied": False, "option": "auto"}


def test_openvino_int8_quantizes_a_vit_with_nncf_transformer_model_type(workdir):
    spec = load_spec(write_spec(workdir, {"models": [vit_model(variants=[
        {"name": "openvino-int8", "options": {"search": False}}])]}))
    r = build(spec, workdir / "repo", workdir / "build").results[0]
    if r.status == "skipped":
        pytest.skip(r.reason)
    assert r.status == "built", r.reason
    man = json.loads((workdir / "repo" / "vit__openvino-int8" / "manifest.json").read_text())
    assert man["info"]["model_type"] == "transformer" and man["info"]["fake_quantize_ops"] > 0
    assert "model_type=nncf.ModelType.TRANSFORMER" in (workdir / "build" / "vit" / "openvino-int8" / "reproduce.sh").read_text()


def test_openvino_converts_the_module_itself_so_attention_stays_one_op(workdir):
    """frontend auto (the default) hands OpenVINO the PyTorch module: nn.MultiheadAttention arrives as separate
    Q, K, V projections feeding one ScaledDotProductAttention op; from the dynamo ONNX the packed QKV projection is
    split by Gathers (3 per attention block) with Squeeze/Transpose chains around it (on the example ViT-B/16 INT8
    the module's IR ran 1.8x the ONNX's at batch 1, README "Two more levers"). Tensors are named as the spec
    names them (the backend matches config names), the batch stays dynamic, and it answers like PyTorch."""
    import openvino as ov
    from examples.vit import vit_tiny

    spec = load_spec(write_spec(workdir, {"models": [
        vit_model(variants=["openvino", {"name": "openvino-int8", "options": {"search": False}}]),
        vit_model(name="vit_onnx", variants=[{"name": "openvino", "options": {"frontend": "onnx"}}])]}))
    results = {(r.model, r.variant): r for r in build(spec, workdir / "repo", workdir / "build").results}
    if any(r.status == "skipped" for r in results.values()):
        pytest.skip(next(r.reason for r in results.values() if r.status == "skipped"))
    assert all(r.status == "built" for r in results.values()), {k: r.reason for k, r in results.items()}
    x = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    with torch.inference_mode():
        ref = vit_tiny()(torch.from_numpy(x)).numpy()
    for name, frontend in (("vit__openvino", "pytorch"), ("vit__openvino-int8", "pytorch"), ("vit_onnx__openvino", "onnx")):
        d = workdir / "repo" / name
        info = json.loads((d / "manifest.json").read_text())["info"]
        assert info["frontend"] == frontend
        # dead rows (generator/variants/ov_rows.py): the last block's Q, attention, out and MLP for the class token
        # only: 16 of 17 tokens x (2 x (64 x 64 + 64 x 64 + 2 x 64 x 256) + 2 x 4 heads x 17 keys x (16 + 16)). From
        # the ONNX the output projection runs on [batch x tokens, 64]: the walk stops there, only the MLP is pruned
        saved = info["dead_rows"]["matmul_ops_before"] - info["dead_rows"]["matmul_ops_after"]
        assert saved == 16 * (2 * (2 * 64 * 64 + 2 * 64 * 256) + 2 * 4 * 17 * 32 if frontend == "pytorch"
                              else 2 * 2 * 64 * 256), info
        model = ov.Core().read_model(str(d / "1" / "model.xml"))
        types = Counter(op.get_type_name() for op in model.get_ops())
        blocks = types["ScaledDotProductAttention"]
        assert blocks >= 2, (name, types)
        if frontend == "pytorch":
            assert types["Gather"] <= 2, (name, types)  # no packed-QKV split (the class token and the batch dim only)
        else:
            assert types["Gather"] >= 3 * blocks, (name, types)
        assert [p.get_any_name() for p in model.inputs] == ["pixel_values"]
        assert [p.get_any_name() for p in model.outputs] == ["logits"]
        assert model.inputs[0].get_partial_shape()[0].is_dynamic
        got = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({"pixel_values": x})["logits"]
        if name.endswith("int8"):
            cos = float(np.sum(got * ref) / (np.linalg.norm(got) * np.linalg.norm(ref)))
            assert cos > 0.9, cos
        else:
            np.testing.assert_allclose(got, ref, atol=1e-4, rtol=1e-3)
    assert "ov.convert_model(model, example_input" in (workdir / "build" / "vit" / "openvino" / "reproduce.sh").read_text()
