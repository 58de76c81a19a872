"""The TensorRT variants inside a build, on a machine without TensorRT (every machine here):
they are skipped with the reason, not an error; their reproduce.sh still carries the trtexec
command; --require-all turns the skip into a failure; ONNX variants get the ORT TensorRT
accelerator block; `validate --triton-version` checks plan provenance."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import load_spec
from generator.config.validate import validate_repository
from specs import text_model, write_spec

pytestmark = pytest.mark.slow

try:
    import tensorrt  # noqa: F401

    HAVE_TRT = True
except ImportError:
    HAVE_TRT = False


def _spec(workdir, **over):
    m = text_model(variants=[{"name": "onnx", "options": {"trt_accelerator": {"precision": "fp16", "workspace_mb": 512}}},
                             "trt-fp16"], **over)
    m.setdefault("triton", {"dynamic_batching": {"preferred_batch_size": [2]}})
    return write_spec(workdir, {"models": [m]})


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: the skip path does not apply")
def test_trt_variant_is_skipped_with_reason_and_reproduce_script(workdir):
    spec = load_spec(_spec(workdir))
    report = build(spec, workdir / "model_repository", workdir / "build")
    r = {x.variant: x for x in report.results}
    assert r["onnx"].status == "built"
    assert r["trt-fp16"].status == "skipped" and "TensorRT not importable" in r["trt-fp16"].reason
    assert not (workdir / "model_repository" / "text__trt-fp16").exists()
    script = (workdir / "build" / "text" / "trt-fp16" / "reproduce.sh").read_text()
    assert "trtexec --onnx=text/export/model.onnx" in script
    assert "--minShapes=input_ids:1x1,attention_mask:1x1" in script
    assert "--optShapes=input_ids:2x8,attention_mask:2x8" in script
    assert "--maxShapes=input_ids:4x16,attention_mask:4x16" in script
    assert "--fp16" in script and "nvcr.io/nvidia/tensorrt:24.10-py3" in script


def test_onnx_variant_gets_ort_tensorrt_accelerator(workdir):
    spec = load_spec(_spec(workdir))
    build(spec, workdir / "model_repository", workdir / "build")
    cfg = text_format.Parse((workdir / "model_repository" / "text__onnx" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert acc.name == "tensorrt"
    assert acc.parameters["precision_mode"] == "FP16"
    assert acc.parameters["max_workspace_size_bytes"] == str(512 * 1024 * 1024)
    assert acc.parameters["trt_profile_max_shapes"] == "input_ids:4x16,attention_mask:4x16"


def test_bad_accelerator_option_names_the_field(workdir):
    # checked when the spec is read (generator/spec/options.py), before anything is built
    m = text_model(variants=[{"name": "onnx", "options": {"trt_accelerator": {"precision": "int4"}}}])
    with pytest.raises(UserError, match=r"models\[0\]\.variants\[0\]\.options\.trt_accelerator\.precision: 'int4'"):
        load_spec(write_spec(workdir, {"models": [m]}))
    assert not (workdir / "model_repository").exists()


def test_profile_smaller_than_max_batch_size_is_refused(workdir):
    m = text_model(variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 2, 2]}]}}])
    spec = load_spec(write_spec(workdir, {"models": [m]}))
    with pytest.raises(UserError, match=r"models\[0\].max_batch_size: 4 > 2"):
        build(spec, workdir / "model_repository", workdir / "build")


@pytest.mark.skipif(HAVE_TRT, reason="TensorRT is installed: the skip path does not apply")
def test_require_all_turns_skip_into_failure(workdir):
    p = _spec(workdir)
    r = subprocess.run([sys.executable, "-m", "generator.cli", "build", str(p), "-o", str(workdir / "out"),
                        "--build-dir", str(workdir / "build"), "--require-all"], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 3, r.stdout + r.stderr
    assert "skipped" in r.stdout


def test_validate_warns_on_plan_built_with_another_tensorrt(tmp_path):
    """A plan file cannot be made here (no TensorRT): the folder holds placeholder bytes, which is all
    `validate` reads of it; the provenance under test lives in manifest.json."""
    d = tmp_path / "repo" / "m__trt-fp16"
    (d / "1").mkdir(parents=True)
    (d / "1" / "model.plan").write_bytes(b"placeholder: no TensorRT in this workplace")
    (d / "config.pbtxt").write_text('name: "m__trt-fp16"\nplatform: "tensorrt_plan"\nmax_batch_size: 4\n'
                                    'input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]\n'
                                    'output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]\n')
    (d / "manifest.json").write_text(json.dumps({"info": {"tensorrt": {
        "tensorrt_version": "8.6.1", "compute_capability": "8.0", "gpu": "A100"}}}))
    reports = validate_repository(tmp_path / "repo", triton_release="24.10", target_cc="9.0")
    warnings = reports[0].warnings
    assert reports[0].ok
    assert any("8.6" in w and "10.5" in w for w in warnings), warnings
    assert any("9.0" in w for w in warnings), warnings
    out = subprocess.run([sys.executable, "-m", "generator.cli", "validate", str(tmp_path / "repo"),
                          "--triton-version", "24.10"], capture_output=True, text=True)
    assert out.returncode == 0 and "warning:" in out.stderr
    bad = subprocess.run([sys.executable, "-m", "generator.cli", "validate", str(tmp_path / "repo"),
                          "--triton-version", "17.01"], capture_output=True, text=True)
    assert bad.returncode == 1 and "--triton-version" in bad.stderr
