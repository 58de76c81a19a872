"""perf.opprofile: per-operator profiles from ONNX Runtime's trace and OpenVINO's counters, by op class.

Real runtimes on a tiny graph with every class in it (conv, GEMM, layer norm, attention: two products of
activations and a softmax). No timed assertions: what is checked is structure and exact FLOP counts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from perf import opprofile, probe
from perf.report import write_report

ROOT = Path(__file__).resolve().parent.parent
PEAKS = {"fp32": 100.0, "int8": 400.0}
B = 2
# hand formulas at batch B: conv 3->8 channels 3x3 on 8x8; tokens [B, 64, 8] x W [8, 16]; QK^T and AV over 64 tokens
CONV = 2 * (B * 8 * 8 * 8) * (3 * 3 * 3)
GEMM = 2 * (B * 64 * 16) * 8
ATTN = 2 * (B * 64 * 64) * 16 + 2 * (B * 64 * 16) * 64  # QK^T [64x16]x[16x64], AV [64x64]x[64x16]


def _tiny(path: Path) -> Path:
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32) * 0.3, "cw"),
             numpy_helper.from_array(np.zeros(8, np.float32), "cb"),
             numpy_helper.from_array(np.array([0, 8, 64], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((8, 16)).astype(np.float32) * 0.3, "w1"),
             numpy_helper.from_array(np.ones(16, np.float32), "gamma"),
             numpy_helper.from_array(np.zeros(16, np.float32), "beta")]
    nodes = [
        helper.make_node("Conv", ["x", "cw", "cb"], ["c"], pads=[1, 1, 1, 1], name="conv"),
        helper.make_node("Relu", ["c"], ["r"], name="relu"),
        helper.make_node("Reshape", ["r", "shape"], ["rs"], name="flatten"),
        helper.make_node("Transpose", ["rs"], ["tok"], perm=[0, 2, 1], name="tokens"),
        helper.make_node("MatMul", ["tok", "w1"], ["h0"], name="proj"),
        helper.make_node("LayerNormalization", ["h0", "gamma", "beta"], ["h"], axis=-1, name="norm"),
        helper.make_node("Transpose", ["h"], ["ht"], perm=[0, 2, 1], name="kt"),
        helper.make_node("MatMul", ["h", "ht"], ["s"], name="qk"),
        helper.make_node("Softmax", ["s"], ["p"], axis=-1, name="softmax"),
        helper.make_node("MatMul", ["p", "h"], ["y"], name="av"),
    ]
    g = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 8, 8])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 64, 16])], inits)
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return _tiny(tmp_path_factory.mktemp("opprofile") / "tiny.onnx")


def _feeds(batch=B):
    return {"x": np.random.default_rng(1).standard_normal((batch, 3, 8, 8)).astype(np.float32)}


def test_formulas_and_classes_of_single_ops():
    assert probe.op_flops("MatMul", [[2, 64, 8], [8, 16]], [[2, 64, 16]]) == GEMM // 1
    assert probe.op_flops("Gemm", [[8, 5], [8, 7]], [[5, 7]]) == 2 * 5 * 7 * 8  # transA: A is [K, M]
    assert probe.op_flops("QLinearConv", [[2, 3, 8, 8], [], [], [8, 3, 3, 3]], [[2, 8, 8, 8]]) == CONV
    assert probe.op_flops("GroupConvolution", [[1, 4, 6, 6], [2, 2, 2, 3, 3]], [[1, 4, 6, 6]]) == 2 * 4 * 36 * 2 * 9
    assert probe.op_flops("ScaledDotProductAttention", [[1, 12, 197, 64], [1, 12, 197, 64]], [[1, 12, 197, 64]]) \
        == 4 * 12 * 197 * 64 * 197
    assert probe.op_flops("MatMul", [None], [[2, 3]]) is None and probe.op_flops("Relu", [[2]], [[2]]) is None
    for op in ("MatMulInteger", "QLinearMatMul", "DynamicQuantizeMatMul", "MatMulIntegerToFloat", "FullyConnected"):
        assert opprofile.op_class(op, [[2, 64, 8], [8, 16]]) == "gemm", op
    assert opprofile.op_class("MatMul", [[2, 4, 64, 16], [2, 4, 16, 64]]) == "attention"
    assert opprofile.op_class("FusedMatMul", [[2, 64, 16]]) == "gemm"  # the weight pre-packed, not in the trace
    assert [opprofile.op_class(o) for o in ("QLinearConv", "SkipLayerNormalization", "QuickGelu", "Softmax",
                                            "DynamicQuantizeLinear", "Transpose")] == \
        ["conv", "norm", "activation", "attention", "quantize", "other"]


def _check_sums(prof):
    cls = prof["classes"]
    assert sum(c["ms"] for c in cls.values()) == pytest.approx(prof["ops_ms"], rel=1e-9)
    assert sum(c["share"] for c in cls.values()) == pytest.approx(1.0)
    assert prof["runs"] >= 3 and prof["ops_ms"] > 0 and prof["wall_ms"] > 0


def test_ort_profile_classes_sum_to_the_total_and_flops_match_the_hand_formula(tiny):
    prof = opprofile.profile(tiny, "onnxruntime", B, feeds=_feeds(), peaks=PEAKS, runs=3, min_s=0.0)
    _check_sums(prof)
    cls = prof["classes"]
    assert {"conv", "gemm", "attention", "norm"} <= set(cls), cls.keys()
    assert cls["conv"]["flops"] == CONV and cls["gemm"]["flops"] == GEMM and cls["attention"]["flops"] == ATTN
    assert prof["counted_gflop"] * 1e9 == pytest.approx(CONV + GEMM + ATTN)
    assert prof["graph_gflop"] * 1e9 == pytest.approx(CONV + GEMM + ATTN)  # the ONNX graph agrees
    # node events sit inside each run's model_run event: the ops never exceed the runtime's own run time
    assert prof["ops_ms"] <= prof["run_ms"] * 1.0001
    g = cls["gemm"]
    assert g["precision"] == "fp32" and g["ceiling_gflops"] == PEAKS["fp32"]
    assert g["ceiling_share"] == pytest.approx(g["gflops"] / PEAKS["fp32"])
    assert len(prof["top"]) <= 10 and prof["top"][0]["ms"] == max(t["ms"] for t in prof["top"])
    md = opprofile.markdown(prof, "tiny")
    assert "| MatMul/GEMM |" in md and "| attention |" in md and "of ceiling" in md


def _calibration(n=4):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.it = iter([_feeds(1) for _ in range(n)])

        def get_next(self):
            return next(self.it, None)

    return Reader()


@pytest.mark.parametrize("kind", ["dynamic", "static-qdq"])
def test_int8_ops_land_in_gemm_and_conv_as_int8(tiny, tmp_path, kind):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_dynamic, quantize_static

    out = tmp_path / f"{kind}.onnx"
    if kind == "dynamic":
        quantize_dynamic(str(tiny), str(out), weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"])
    else:
        quantize_static(str(tiny), str(out), _calibration(), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=["MatMul", "Conv"], per_channel=True)
    ops = {n.op_type for n in onnx.load(str(out)).graph.node}
    assert ops & {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear"}, ops
    prof = opprofile.profile(out, "onnxruntime", B, feeds=_feeds(), peaks=PEAKS, runs=3, min_s=0.0)
    _check_sums(prof)
    gemm = prof["classes"]["gemm"]
    assert set(gemm["ops"]) & opprofile._INT8, gemm["ops"]
    assert gemm["precision"] == "int8" and gemm["ceiling_gflops"] == PEAKS["int8"]
    assert gemm["flops"] == GEMM  # the int8 projection does the fp32 one's multiply-adds
    if kind == "static-qdq":
        assert prof["classes"]["conv"]["precision"] == "int8" and prof["classes"]["conv"]["flops"] == CONV


def test_openvino_counters_on_a_tiny_ir(tiny, tmp_path):
    import openvino as ov

    xml = tmp_path / "tiny.xml"
    ov.save_model(ov.convert_model(str(tiny)), str(xml))
    prof = opprofile.profile(xml, "openvino", B, feeds=_feeds(), peaks=PEAKS, runs=3, min_s=0.0)
    _check_sums(prof)
    cls = prof["classes"]
    assert cls["conv"]["flops"] == CONV and cls["gemm"]["flops"] == GEMM, cls
    assert cls["attention"]["flops"] == ATTN, cls
    kernels = {t["kernel"] for t in prof["top"]}
    assert all(k and k != "undef" for k in kernels) and any("f32" in k for k in kernels), kernels
    assert cls["gemm"]["precision"] == "fp32" and prof["executed_batch"] == B


def test_openvino_runs_a_qdq_model_with_int8_kernels_counted_as_gemm(tiny, tmp_path):
    from onnxruntime.quantization import QuantFormat, quantize_static

    qdq = tmp_path / "qdq.onnx"
    quantize_static(str(tiny), str(qdq), _calibration(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["MatMul", "Conv"], per_channel=True)
    prof = opprofile.profile(qdq, "openvino", B, feeds=_feeds(), peaks=PEAKS, runs=3, min_s=0.0)
    _check_sums(prof)
    cls = prof["classes"]
    # OpenVINO fuses DQ -> MatMul -> Q into one int8 FullyConnected (exec_type ..._i8/_I8): the projection's FLOPs
    assert cls["gemm"]["precision"] == "int8" and cls["gemm"]["flops"] == GEMM, cls["gemm"]
    # The 3-channel conv is the CPU plugin's choice: int8 on AVX2/AVX-512 VNNI, dequantized to an f32 brgconv on
    # AMX (seen on a Sapphire Rapids class Xeon). Either way its FLOPs are counted and its precision is the kernel's.
    conv_kernels = [t["kernel"] for t in prof["top"] if t["class"] == "conv"]
    assert cls["conv"]["flops"] == CONV and cls["conv"]["precision"] in ("int8", "fp32"), cls["conv"]
    if conv_kernels:  # in the top 10 nodes by time
        assert cls["conv"]["precision"] == opprofile._ov_precision(conv_kernels[0]), (cls["conv"], conv_kernels)
    assert any(o.startswith("FullyConnected") for o in cls["gemm"]["ops"])


def test_cli_standalone_writes_json_and_refuses_a_bad_path(tiny, tmp_path):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TRITONGEN_PEAKS=json.dumps(PEAKS))
    out = tmp_path / "p.json"
    proc = subprocess.run([sys.executable, "-m", "perf.opprofile", str(tiny), "--batch", "2", "--json", str(out),
                           "--min-s", "0"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "| convolution |" in proc.stdout
    assert json.loads(out.read_text())["classes"]["conv"]["flops"] == CONV
    bad = subprocess.run([sys.executable, "-m", "perf.opprofile", str(tmp_path / "nope.onnx")], capture_output=True,
                         text=True, env=env, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and bad.stderr.strip().count("\n") == 0 and "no such file" in bad.stderr
    # a file that is no model: one line naming it (was a protobuf DecodeError traceback)
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    junk = subprocess.run([sys.executable, "-m", "perf.opprofile", str(tmp_path / "junk.onnx")], capture_output=True,
                          text=True, env=env, cwd=ROOT, timeout=60)
    assert junk.returncode == 1 and junk.stderr.strip().count("\n") == 0, junk.stderr
    assert "junk.onnx: cannot be loaded or run" in junk.stderr and "Traceback" not in junk.stderr


def test_report_has_where_the_time_goes_with_a_skip_line(tiny, tmp_path):
    prof = opprofile.profile(tiny, "onnxruntime", B, feeds=_feeds(), peaks=PEAKS, runs=3, min_s=0.0)
    skipped = opprofile.for_winners({"other": ("other__torchscript", "torchscript", tmp_path / "model.pt", 1)},
                                    tmp_path, PEAKS, tmp_path)
    run = {"run_id": "t", "latency_budget_ms": 100.0, "steps": [], "models": {}, "meta": {},
           "opprofile": {"tiny": {"triton_name": "tiny__onnx", **prof}, **skipped}}
    write_report(run, tmp_path / "r")
    md = (tmp_path / "r" / "report.md").read_text()
    assert "## Where the time goes" in md and "| MatMul/GEMM |" in md
    assert "other__torchscript" in md and "not profiled: TorchScript" in md
    assert "Where the time goes" in (tmp_path / "r" / "report.html").read_text()
    got = json.loads((tmp_path / "r" / "results.json").read_text())["opprofile"]
    assert got["tiny"]["classes"]["conv"]["flops"] == CONV


def test_nchwc_padded_conv_takes_the_graph_flops():
    # ONNX Runtime's NCHWc conv pads 8 output channels to 16 on AVX-512 (to 8, i.e. none, on AVX2): a synthetic
    # trace record of the padded node, as the AVX-512 machine's trace had it, must not double the class's FLOPs
    padded = {"name": "r_nchwc", "op": "Conv", "class": "conv", "kernel": "CPU", "ms": 1.0, "flops": 2 * CONV,
              "uncounted": False, "padded": True, "precision": "fp32"}
    prof = opprofile.summarise([padded], PEAKS, {"conv": CONV})
    assert prof["classes"]["conv"]["flops"] == CONV and prof["classes"]["conv"]["flops_from"] == "graph"
    assert prof["counted_gflop"] * 1e9 == CONV and any("NCHWc" in n for n in prof["notes"])
    alone = opprofile.summarise([padded], PEAKS, {})  # no graph FLOPs to take: the padded count, said so
    assert alone["classes"]["conv"]["flops"] == 2 * CONV and any("high bound" in n for n in alone["notes"])


def test_openvino_nodes_map_to_layers_whose_names_hold_slashes():
    """The names as the CPU plugin reported them for the example ViT's int8 IR (OpenVINO 2026.4, NNCF): the layers'
    own friendly names hold "/" ("blocks.0.attn/aten::_native_multi_head_attention/MatMul"), and the executed K/V
    projections are named "<layer>/DequantizationMultiply", fused with the FakeQuantize after their bias Add. Cutting
    at the first "/" found no layer, and 24 of the 72 GEMMs went uncounted (the class read 66% of the ceiling, 81%
    once counted). A node must reach its MatMul through the longest prefix that is a layer."""
    mm = "__module.inner.blocks.0.attn/aten::_native_multi_head_attention/MatMul"
    add, fq = mm.replace("MatMul", "Add"), mm.replace("MatMul", "Add") + "/fq_output_0"
    layers = {mm: {"op": "MatMul", "flops": 929562624, "class": "gemm", "from": ["norm1/fq", mm + "/fq_weights_1"]},
              mm + "/fq_weights_1": {"op": "Multiply", "flops": None, "class": "other", "from": []},
              add: {"op": "Add", "flops": None, "class": "other", "from": [mm, "Constant_1"]},
              fq: {"op": "FakeQuantize", "flops": None, "class": "quantize", "from": [add]}}
    node = mm + "/DequantizationMultiply"
    got = opprofile._ov_origins({node: {}}, {node: [node, fq]}, layers)
    assert [o["flops"] for o in got[node] if o["flops"]] == [929562624], got
