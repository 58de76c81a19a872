"""Every registered variant builds on tiny models and matches PyTorch; a registered variant without
an entry here fails `test_every_registered_variant_has_a_test`."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.build.pipeline import build
from generator.spec import load_spec
from generator.variants import REGISTRY
from specs import cnn_model, text_model, write_spec

pytestmark = pytest.mark.slow


def _run_onnx(path, feeds):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"]).run(None, feeds)


def _run_torchscript(path, feeds):
    out = torch.jit.load(str(path))(*[torch.from_numpy(v) for v in feeds.values()])
    return [o.detach().numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _run_aoti(path, feeds):
    import torch._inductor

    out = torch._inductor.aoti_load_package(str(path))(*[torch.from_numpy(v) for v in feeds.values()])
    return [o.detach().numpy() for o in (out if isinstance(out, (tuple, list)) else (out,))]


def _run_trt(path, feeds):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    with TrtRunner(EngineFromBytes(BytesFromPath(str(path)))) as r:
        return list(r.infer(feeds).values())


def _run_openvino(path, feeds):
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(str(path)), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled.create_infer_request().infer(feeds)
    return [result[p] for p in compiled.outputs]


# variant -> (how to run its artifact in the test, atol vs torch on the CNN, artifact file)
VARIANT_TESTS = {
    "onnx": (_run_onnx, 1e-4, "model.onnx"),
    "torchscript": (_run_torchscript, 1e-5, "model.pt"),
    # TensorRT variants skip here (no TensorRT in this workplace); tests/gpu/ builds real plans
    "trt-fp32": (_run_trt, 1e-3, "model.plan"),
    "trt-fp16": (_run_trt, 5e-2, "model.plan"),
    "trt-int8": (_run_trt, 2e-1, "model.plan"),
    "trt-best": (_run_trt, 2e-1, "model.plan"),
    "onnx-fp16": (_run_onnx, 2e-2, "model.onnx"),
    "onnx-int8": (_run_onnx, 1e-1, "model.onnx"),
    "onnx-int8-dynamic": (_run_onnx, 1e-1, "model.onnx"),
    "openvino": (_run_openvino, 1e-4, "model.xml"),
    "openvino-int8": (_run_openvino, 1e-1, "model.xml"),
    "torch-aoti": (_run_aoti, 1e-4, "model.pt2"),  # skips where no C++ compiler (tests/test_torch_aoti.py)
}


def test_every_registered_variant_has_a_test():
    missing = sorted(set(REGISTRY) - set(VARIANT_TESTS))
    assert not missing, f"registered variants without a test in tests/test_variants.py: {missing}"


def test_every_variant_declares_what_the_config_needs():
    for key, v in REGISTRY.items():
        assert v.key == key
        assert v.platform or v.backend, key
        assert v.filename and v.template and v.runtime and v.devices, key
        assert v.tolerance.atol is not None or v.tolerance.min_cosine is not None, key


@pytest.mark.parametrize("key", sorted(VARIANT_TESTS))
def test_variant_builds_and_matches_pytorch(workdir, key):
    run, atol, filename = VARIANT_TESTS[key]
    spec = load_spec(write_spec(workdir, {"models": [cnn_model(variants=[key])]}))
    report = build(spec, workdir / "model_repository", workdir / "build")
    r = report.results[0]
    if r.status == "skipped":
        pytest.skip(f"{key} cannot run on this machine: {r.reason}")
    assert r.status == "built", r.reason
    artifact = workdir / "model_repository" / f"cnn__{key}" / "1" / filename
    from examples.cnn import small_cnn

    x = np.random.default_rng(5).standard_normal((3, 3, 16, 16)).astype(np.float32)
    ref = small_cnn(width=8)(torch.from_numpy(x)).detach().numpy()
    got = run(artifact, {"images": x})[0]
    np.testing.assert_allclose(got, ref, atol=atol, rtol=1e-2)


@pytest.mark.parametrize("key", sorted(VARIANT_TESTS))
def test_variant_handles_named_dims_and_int_inputs(workdir, key):
    # This test is about shapes (named dims, int inputs, two outputs), not INT8 accuracy: a random tiny
    # transformer quantizes worse without VNNI (cosine 0.975 on an AVX2-only Zen 3, 0.99+ with VNNI),
    # so INT8 variants get a gate that any working quantizer meets on any x86 CPU. INT8 accuracy is
    # gated on the CNN above and on real models in test_precision.py.
    variant = {"name": key, "verify": {"min_cosine": 0.9}} if "int8" in key else key
    spec = load_spec(write_spec(workdir, {"models": [text_model(variants=[variant])]}))
    r = build(spec, workdir / "model_repository", workdir / "build").results[0]
    if r.status == "skipped":
        pytest.skip(f"{key} cannot run on this machine: {r.reason}")
    assert r.status == "built", r.reason
    assert {c["point"] for c in r.verification["checks"]} >= {"batch=1,seq=1", "batch=1,seq=16", "batch=4,seq=8"}


def test_dynamic_int8_skips_a_graph_without_matmul_and_the_rest_is_written(workdir):
    """SqueezeNet-like: dynamic INT8 quantizes MatMul/Gemm only; with none it is skipped with the reason (exit 0),
    not a spec error stopping the whole build. op_types given by the user and matching nothing stay an error."""
    m = cnn_model(source={"factory": "tinymodels.tiny:conv_only"}, outputs=[{"name": "y", "dtype": "float32",
                                                                             "shape": [4]}],
                  variants=["onnx", "onnx-int8-dynamic"])
    spec = load_spec(write_spec(workdir, {"models": [m]}))
    report = build(spec, workdir / "model_repository", workdir / "build")
    by = {r.variant: r for r in report.results}
    assert by["onnx"].status == "built"
    assert by["onnx-int8-dynamic"].status == "skipped" and "this graph has none (Conv" in by["onnx-int8-dynamic"].reason


def test_fp16_keeps_an_fp32_output_that_a_blocked_op_produces(workdir):
    """LRASPP from torchvision: its output 'out' is a Resize, which onnxconverter-common keeps in fp32 and then
    casts to fp16 as the graph output despite keep_io_types; the config says FP32 (Triton checks it) and the
    build stopped. The output is fp32 again and the variant verifies."""
    import onnx

    m = cnn_model(source={"factory": "tinymodels.tiny:upsampled"},
                  outputs=[{"name": "y", "dtype": "float32", "shape": [2, 32, 32]}], variants=["onnx-fp16"])
    spec = load_spec(write_spec(workdir, {"models": [m]}))
    report = build(spec, workdir / "model_repository", workdir / "build")
    assert report.results[0].status == "built", report.results[0].reason
    graph = onnx.load(str(workdir / "model_repository" / "cnn__onnx-fp16" / "1" / "model.onnx"))
    assert [o.type.tensor_type.elem_type for o in graph.graph.output] == [onnx.TensorProto.FLOAT]


def test_a_variant_whose_build_crashes_in_native_code_fails_alone(workdir, monkeypatch):
    """NNCF + OpenVINO's recipe search died of SIGSEGV on two timm models and took the whole build with it: the
    openvino-int8 build runs in a child process, so the crash fails that variant (one line) and the rest is written.
    The crash is injected (TRITONGEN_TEST_CRASH: the child kills itself), the real one needs those models."""
    from generator.build import isolate

    monkeypatch.setenv(isolate.CRASH_ENV, "openvino-int8")
    spec = load_spec(write_spec(workdir, {"models": [cnn_model(variants=["onnx", "openvino-int8"])]}))
    report = build(spec, workdir / "model_repository", workdir / "build")
    by = {r.variant: r for r in report.results}
    assert by["onnx"].status == "built"
    assert by["openvino-int8"].status == "failed" and "died of SIGSEGV in native code" in by["openvino-int8"].reason
    assert (workdir / "model_repository" / "cnn__onnx").is_dir()
    assert not (workdir / "model_repository" / "cnn__openvino-int8").exists()
    monkeypatch.delenv(isolate.CRASH_ENV)
    report = build(spec, workdir / "model_repository", workdir / "build")  # in the child, for real this time
    assert {r.variant: r.status for r in report.results} == {"onnx": "cached", "openvino-int8": "built"}
    again = build(spec, workdir / "model_repository", workdir / "build")  # cached: no child
    assert [r.status for r in again.results] == ["cached", "cached"]
