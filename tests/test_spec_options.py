"""Each variant's ``options`` is a typed model in the spec layer (generator/spec/options.py): every option's
bad value is refused when the spec is read, as one line naming ``models[0].variants[i].options.<key>``, and
the CLI exits 1 with no traceback. Good values come back typed, with the variant's defaults."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

from generator.errors import UserError
from generator.spec import parse_spec
from generator.spec.options import OPTIONS

from specs import linear_model, write_spec

SPEC = Path("/tmp/spec.yaml")
TRT = [f"trt-{p}" for p in ("fp32", "fp16", "int8", "best")]
ORT = ["onnx", "onnx-fp16", "onnx-int8", "onnx-int8-dynamic"]

# variant(s), option, a bad value, what the message says after "options.<option>: "
BAD = [
    (["torchscript"], "method", "compile", "'compile' is not one of trace, script"),
    (["torchscript"], "freeze", "yes", "expected true or false, got 'yes'"),
    (["torch-aoti"], "device", "tpu", "'tpu' is not one of cpu, gpu"),
    (["torch-aoti"], "max_autotune", "yes", "expected true or false, got 'yes'"),
    (TRT, "workspace_mb", "lots", "expected an integer, got the string 'lots'"),
    (TRT, "workspace_mb", 0, "must be >= 1, got 0"),
    (TRT, "builder_optimization_level", 6, "must be <= 5, got 6"),
    (TRT, "builder_optimization_level", 1.5, "expected an integer, got 1.5"),
    (TRT, "cuda_graphs", "on", "expected true or false, got 'on'"),
    (TRT, "triton_release", ["24.10"], "expected a non-empty string, got a list"),
    (ORT, "trt_accelerator", "fast", "expected true or a mapping {precision, workspace_mb, engine_cache_path}"),
    (ORT, "trt_accelerator", {"precision": "int4"}, None),  # -> .precision: 'int4' is not one of fp32, fp16, int8
    (ORT, "trt_accelerator", {"workspace_mb": -1}, None),
    (ORT, "trt_accelerator", {"colour": 1}, None),
    (["onnx-fp16"], "op_block_list", "Softmax", "expected a list, got the string 'Softmax'"),
    (["onnx-fp16"], "op_block_list", [1], None),
    (["onnx-int8", "onnx-int8-dynamic"], "per_channel", 1, "expected true or false, got 1"),
    (["onnx-int8", "onnx-int8-dynamic"], "reduce_range", "no", "expected true or false, got 'no'"),
    (["onnx-int8", "onnx-int8-dynamic"], "op_types", "MatMul", "expected a list, got the string 'MatMul'"),
    (["onnx-int8", "onnx-int8-dynamic"], "nodes_to_exclude", [""], None),
    (["onnx-int8", "onnx-int8-dynamic"], "fusion", "yes", "'yes' is not one of auto, transformer, none"),
    (["onnx-int8", "onnx-int8-dynamic"], "num_heads", 0, "must be >= 1, got 0"),
    (["onnx-int8", "onnx-int8-dynamic"], "hidden_size", "big", "expected an integer, got the string 'big'"),
    (["onnx-int8"], "quant_format", "qlinear", "'qlinear' is not one of qdq, qoperator"),
    (["onnx-int8"], "calibration_method", "magic", "'magic' is not one of minmax, entropy, percentile"),
    (["onnx-int8"], "activation_type", "int4", "'int4' is not one of uint8, int8"),
    (["onnx-int8"], "weight_type", "int4", "'int4' is not one of uint8, int8"),
    (["onnx-int8"], "fallback", "no", "expected true or false, got 'no'"),
    (["onnx-int8", "openvino-int8"], "search", 2, "expected true or false, got 2"),
    (["onnx-int8", "openvino-int8"], "search_budget_s", -5, "expected a finite non-negative number, got -5"),
    (["openvino", "openvino-int8"], "inference_precision", "int8", "'int8' is not one of f32, bf16, auto"),
    (["openvino", "openvino-int8"], "performance_hint", "fast", "'FAST' is not one of LATENCY, THROUGHPUT"),
    (["openvino", "openvino-int8"], "num_streams", 0, "expected a positive integer or AUTO, got 0"),
    (["openvino", "openvino-int8"], "frontend", "tflite", "'tflite' is not one of auto, pytorch, onnx"),
    (["openvino", "openvino-int8"], "dead_rows", "off", "expected true or false, got 'off'"),
    (["openvino-int8"], "preset", "fast", "'fast' is not one of performance, mixed"),
    (["openvino-int8"], "model_type", "cnn", "'cnn' is not one of transformer, generic"),
    (["openvino-int8"], "subset_size", 0, "must be >= 1, got 0"),
    (["openvino-int8"], "fast_bias_correction", "y", "expected true or false, got 'y'"),
    (["openvino-int8"], "ignored_nodes", "a", "expected a list, got the string 'a'"),
    (["openvino-int8"], "ignored_types", [3], None),
]
CASES = [(v, opt, bad, msg) for vs, opt, bad, msg in BAD for v in vs]


def _read(variant: str, options: dict):
    return parse_spec({"models": [linear_model(variants=["onnx", {"name": variant, "options": options}]
                                               if variant != "onnx" else [{"name": "onnx", "options": options}])]},
                      SPEC).models[0]


@pytest.mark.parametrize("variant,option,bad,msg", CASES, ids=[f"{c[0]}-{c[1]}-{c[2]!r}"[:60] for c in CASES])
def test_a_bad_option_is_one_line_naming_its_field(variant, option, bad, msg):
    with pytest.raises(UserError) as e:
        _read(variant, {option: bad})
    text = str(e.value)
    index = 0 if variant == "onnx" else 1
    assert text.startswith(f"models[0].variants[{index}].options.{option}"), text
    if msg is not None:
        assert text == f"models[0].variants[{index}].options.{option}: {msg}", text
    assert "\n" not in text


def test_every_option_of_every_variant_has_a_bad_value_tested():
    tested = {(v, opt) for v, opt, _, _ in CASES}
    for key, cls in OPTIONS.items():
        for f in dataclasses.fields(cls):
            if f.name == "profiles":  # checked against the model's dims: tests/test_tensorrt.py
                continue
            assert (key, f.name) in tested, f"{key}: option {f.name} has no bad-value test"


def test_uint8_weights_need_uint8_activations():
    with pytest.raises(UserError, match=r"models\[0\]\.variants\[1\]\.options\.weight_type: uint8 weights need uint8"):
        _read("onnx-int8", {"activation_type": "int8", "weight_type": "uint8"})


def test_good_options_come_back_typed_with_defaults_and_as_written():
    ts = _read("torchscript", {"method": "script"}).variants[1]
    assert (ts.options.method, ts.options.freeze) == ("script", False)
    assert dict(ts.options) == {"method": "script"}  # what the build cache digests: as written
    ov = _read("openvino", {"inference_precision": "BF16", "num_streams": "auto"}).variants[1].options
    assert (ov.inference_precision, ov.performance_hint, ov.num_streams) == ("bf16", "LATENCY", "AUTO")
    assert ov.get("inference_precision") == "BF16" and "performance_hint" not in ov
    trt = _read("trt-fp16", {"triton_release": 24.10, "workspace_mb": 512}).variants[1].options
    assert (trt.triton_release, trt.workspace_mb, trt.builder_optimization_level) == ("24.1", 512, 3)
    i8 = _read("onnx-int8", {"fusion": "Transformer", "quant_format": "QOperator", "num_heads": 12}).variants[1].options
    assert (i8.fusion, i8.quant_format, i8.num_heads, i8.hidden_size) == ("transformer", "qoperator", 12, None)
    assert dict(i8) == {"fusion": "Transformer", "quant_format": "QOperator", "num_heads": 12}
    dyn = _read("onnx-int8-dynamic", {}).variants[1].options
    assert (dyn.fusion, dyn.num_heads) == ("none", None) and not hasattr(dyn, "quant_format")
    acc = _read("onnx", {"trt_accelerator": True}).variants[0].options
    assert acc.trt_accelerator.precision == "fp16" and acc.get("trt_accelerator") is True


@pytest.mark.parametrize("variant,options,exit_code", [
    ("torchscript", {"method": "compile"}, 1),
    ("trt-fp16", {"workspace_mb": "lots"}, 1),
    ("onnx-int8", {"quant_format": "qlinear"}, 1),
    ("onnx-int8-dynamic", {"fusion": "always"}, 1),
])
def test_cli_exits_1_without_traceback_for_a_bad_option(workdir, variant, options, exit_code):
    p = write_spec(workdir, {"models": [linear_model(variants=[{"name": variant, "options": options}])]})
    r = subprocess.run([sys.executable, "-m", "generator.cli", "build", str(p), "-o", str(workdir / "out"),
                        "--build-dir", str(workdir / "build")], capture_output=True, text=True, timeout=300)
    assert r.returncode == exit_code, r.stdout + r.stderr
    assert "Traceback" not in r.stdout + r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: models[0].variants[0].options.{next(iter(options))}: ")
    assert not (workdir / "out").exists()
