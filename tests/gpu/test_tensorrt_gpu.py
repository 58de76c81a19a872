"""A real TensorRT build and inference: generator.stages.tensorrt.build_engine -> Polygraphy TrtRunner,
compared with onnxruntime (CPU) and PyTorch.

Needs the TensorRT builder (``import tensorrt`` with ``tensorrt.Builder``) and a CUDA GPU. Neither
the workplace nor its lent GPU machines carry TensorRT, so here this module skips; run it inside
``nvcr.io/nvidia/tensorrt:<release>-py3`` (with the project's requirements installed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

trt = pytest.importorskip(
    "tensorrt",
    reason="TensorRT builder not importable (it cannot be installed in this workplace; "
    "run tests/gpu in nvcr.io/nvidia/tensorrt:<release>-py3)",
)
torch = pytest.importorskip("torch")
if not hasattr(trt, "Builder"):
    pytest.skip("tensorrt here is the lean/dispatch runtime only (no Builder)", allow_module_level=True)
if not torch.cuda.is_available():
    pytest.skip("no CUDA GPU", allow_module_level=True)

import onnx  # noqa: E402
import onnxruntime as ort  # noqa: E402
from polygraphy.backend.trt import EngineFromPath, TrtRunner  # noqa: E402

from generator.stages import tensorrt as T  # noqa: E402
from generator.spec import parse_spec  # noqa: E402

pytestmark = pytest.mark.gpu

MAX_BATCH = 16


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.conv = torch.nn.Conv2d(3, 16, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(16)
        self.fc = torch.nn.Linear(16, 10)
        for p in self.parameters():
            with torch.no_grad():
                p.copy_(torch.randn(p.shape, generator=g) * 0.2)
        self.bn.running_mean.normal_(0, 0.1, generator=g)
        self.bn.running_var.uniform_(0.5, 1.5, generator=g)

    def forward(self, images):
        x = torch.relu(self.bn(self.conv(images)))
        return self.fc(x.mean(dim=(2, 3)))


def _model(profiles=None):
    variant = {"name": "trt-fp16"}
    if profiles:
        variant["options"] = {"profiles": profiles}
    data = {
        "models": [
            {
                "name": "tiny",
                "source": {"factory": "tests.gpu:unused"},
                "max_batch_size": MAX_BATCH,
                "inputs": [{"name": "images", "dtype": "float32", "shape": [3, 32, 32]}],
                "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}],
                "variants": [variant],
                "triton": {"instance_group": [{"kind": "KIND_GPU", "profile": [str(i) for i in range(len(profiles or [0]))]}]},
            }
        ]
    }
    return parse_spec(data, Path("spec.yaml").resolve(), known_variants=("trt-fp16",)).models[0]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    d = tmp_path_factory.mktemp("trt")
    net = Tiny().eval()
    path = d / "model.onnx"
    x = torch.randn(2, 3, 32, 32)
    torch.onnx.export(
        net, (x,), str(path), input_names=["images"], output_names=["logits"],
        dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False,
    )
    onnx.save(onnx.load(str(path)), str(path))  # weights inline
    return net, path


def _references(net, onnx_path, x):
    with torch.no_grad():
        ref_torch = net(torch.from_numpy(x)).numpy()
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref_ort = sess.run(None, {"images": x})[0]
    np.testing.assert_allclose(ref_ort, ref_torch, atol=1e-4, rtol=1e-4)
    return ref_torch, ref_ort


def _run(plan, x, profile=None):
    with TrtRunner(EngineFromPath(str(plan)), optimization_profile=profile) as runner:
        return np.asarray(runner.infer({"images": x})["logits"])


def test_fp32_build_matches_onnxruntime_and_torch(exported, tmp_path):
    net, onnx_path = exported
    m = _model()
    profiles = T.profiles_for(m)
    T.check_config_against_profiles(m, profiles)
    plan = tmp_path / "1" / "model.plan"
    cache = tmp_path / "timing.cache"
    prov = T.build_engine(onnx_path, plan, profiles, "fp32", cache, 256 << 20)
    assert plan.is_file() and prov["plan_bytes"] == plan.stat().st_size
    assert cache.is_file() and cache.stat().st_size > 0
    assert prov["tensorrt_version"] == trt.__version__
    major, minor = torch.cuda.get_device_capability(0)
    assert prov["compute_capability"] == f"{major}.{minor}"
    assert prov["builder_flags"] == {"tf32": False, "fp16": False, "int8": False}
    for batch in (1, 5, MAX_BATCH):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        ref_torch, ref_ort = _references(net, onnx_path, x)
        got = _run(plan, x)
        np.testing.assert_allclose(got, ref_ort, atol=1e-3, rtol=1e-3)
        np.testing.assert_allclose(got, ref_torch, atol=1e-3, rtol=1e-3)

    # The timing cache is reused: a second build reads it and still produces a working plan.
    plan2 = tmp_path / "2" / "model.plan"
    T.build_engine(onnx_path, plan2, profiles, "fp32", cache, 256 << 20)
    x = np.ones((3, 3, 32, 32), np.float32)
    np.testing.assert_allclose(_run(plan2, x), _run(plan, x), atol=1e-5)


def test_fp16_two_profiles(exported, tmp_path):
    net, onnx_path = exported
    m = _model([{"batch": [1, 1, 4]}, {"batch": [5, 8, MAX_BATCH]}])
    profiles = T.profiles_for(m, m.variants[0])
    T.check_config_against_profiles(m, profiles)
    plan = tmp_path / "model.plan"
    prov = T.build_engine(onnx_path, plan, profiles, "fp16", tmp_path / "timing.cache", 256 << 20)
    assert prov["builder_flags"]["fp16"] is True
    for profile, batch in ((0, 3), (1, 12)):
        x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
        ref_torch, _ = _references(net, onnx_path, x)
        got = _run(plan, x, profile=profile)
        assert got.shape == ref_torch.shape
        np.testing.assert_allclose(got, ref_torch, atol=5e-2, rtol=5e-2)
        cos = float((got * ref_torch).sum() / (np.linalg.norm(got) * np.linalg.norm(ref_torch)))
        assert cos > 0.999


def test_trtexec_command_builds_the_same_plan(exported, tmp_path):
    import shutil
    import subprocess

    if shutil.which("trtexec") is None:
        pytest.skip("trtexec not on PATH")
    _, onnx_path = exported
    m = _model()
    profiles = T.profiles_for(m)
    plan = tmp_path / "model.plan"
    argv = T.trtexec_command(onnx_path, plan, profiles, "fp32", 256, tmp_path / "timing.cache")
    subprocess.run(argv, check=True, capture_output=True, timeout=600)
    x = np.ones((2, 3, 32, 32), np.float32)
    _, ref_ort = _references(exported[0], onnx_path, x)
    np.testing.assert_allclose(_run(plan, x), ref_ort, atol=1e-3, rtol=1e-3)
