"""A cache that never lies (issue 14 item 6): the build key follows everything an artifact is made of
(the factory's source and the local modules it imports, calibration data bytes, the preprocessing of
calibration images, TensorRT profiles), failed results are retried, and a no-op re-run writes nothing."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from generator.build.pipeline import ModelBuild, _variant_key, build, model_inputs_hashes
from generator.formats.repository import HashCache
from generator.spec import load_spec
from generator.variants import REGISTRY
from specs import linear_model, write_spec

FACTORY = '''
import torch


def make():
    from helper_TAG import SCALE  # a local module, imported inside the function

    torch.manual_seed(0)
    fc = torch.nn.Linear(4, 3)
    return torch.nn.Sequential(fc, Scale(SCALE)).eval()


class Scale(torch.nn.Module):
    def __init__(self, s):
        super().__init__()
        self.s = s

    def forward(self, x):
        return x * self.s
'''


def _tag(workdir):
    return "".join(c if c.isalnum() else "_" for c in workdir.name)


def _spec(workdir, scale=2.0, **over):
    t = _tag(workdir)
    (workdir / f"factory_{t}.py").write_text(FACTORY.replace("TAG", t))
    (workdir / f"helper_{t}.py").write_text(f"SCALE = {scale}\n")
    model = linear_model(source={"factory": f"factory_{t}:make"}, **over)
    return load_spec(write_spec(workdir, {"models": [model]}))


def _key(workdir, spec, variant="onnx"):
    m = spec.models[0]
    mb = ModelBuild(spec, m, workdir / "build", events=None, force=False, hashes=HashCache(None))
    vs = next((v for v in m.variants if v.name == variant), dataclasses.replace(m.variants[0], name=variant))
    return mb.key, _variant_key(mb, REGISTRY[variant], vs)


def test_key_follows_the_factory_source_and_its_local_imports(workdir):
    spec = _spec(workdir)
    first = _key(workdir, spec)
    assert _key(workdir, spec) == first
    t = _tag(workdir)
    sources = model_inputs_hashes(spec, spec.models[0], HashCache(None))["sources"]
    assert sorted(sources) == [f"factory_{t}.py", f"helper_{t}.py"]
    (workdir / f"helper_{t}.py").write_text("SCALE = 3.0\n")
    second = _key(workdir, spec)
    assert second[0] != first[0] and second[1] != first[1]
    path = workdir / f"factory_{t}.py"
    path.write_text(path.read_text() + "\n# a comment is a change too\n")
    assert _key(workdir, spec)[0] not in (first[0], second[0])


def test_key_follows_calibration_bytes_folders_and_their_preprocessing(workdir):
    rng = np.random.default_rng(0)
    np.savez(workdir / "cal.npz", x=rng.standard_normal((4, 4)).astype(np.float32))
    spec = _spec(workdir, calibration={"data": "cal.npz"})
    first = _key(workdir, spec)
    np.savez(workdir / "cal.npz", x=rng.standard_normal((4, 4)).astype(np.float32))  # same size, new bytes
    assert _key(workdir, spec)[0] != first[0]

    (workdir / "images").mkdir()
    (workdir / "images" / "a.png").write_bytes(b"one")
    model = {"calibration": {"data": "images"}, "inputs": [{"name": "x", "dtype": "float32", "shape": [3, 8, 8]}],
             "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}]}
    spec = _spec(workdir, **model, preprocess={"image": {"size": [8, 8]}})
    k1 = _key(workdir, spec)[0]
    (workdir / "images" / "b.png").write_bytes(b"two")
    k2 = _key(workdir, spec)[0]
    spec = _spec(workdir, **model, preprocess={"image": {"size": [8, 8], "mean": [0.5, 0.5, 0.5]}})
    k3 = _key(workdir, spec)[0]
    assert len({k1, k2, k3}) == 3


def test_tensorrt_key_follows_the_profile_opt_batch_from_triton_settings(workdir):
    def keys(pref):
        spec = _spec(workdir, max_batch_size=8, variants=["onnx", "trt-fp16"],
                     triton={"dynamic_batching": {"preferred_batch_size": pref}})
        return _key(workdir, spec, "onnx")[1], _key(workdir, spec, "trt-fp16")[1]

    (onnx_a, trt_a), (onnx_b, trt_b) = keys([4]), keys([8])
    assert onnx_a == onnx_b  # a config-only change for ONNX
    assert trt_a != trt_b  # the plan's opt shape changes


@pytest.mark.slow
def test_edited_factory_rebuilds_with_fresh_numbers_and_noop_writes_nothing(workdir):
    spec = _spec(workdir)
    out, bdir = workdir / "model_repository", workdir / "build"
    r1 = build(spec, out, bdir).results[0]
    assert r1.status == "built"

    def snapshot():
        return {str(p): p.stat().st_mtime_ns for root in (out, bdir) for p in root.rglob("*")}

    before = snapshot()
    r2 = build(spec, out, bdir)
    assert r2.results[0].status == "cached" and not r2.changed
    assert snapshot() == before  # nothing under build/ or the repository was written

    (workdir / f"helper_{_tag(workdir)}.py").write_text("SCALE = -5.0\n")
    r3 = build(_spec(workdir, scale=-5.0), out, bdir).results[0]
    assert r3.status == "built" and r3.verification["passed"]
    import onnxruntime as ort

    x = np.ones((1, 4), np.float32)
    y = ort.InferenceSession(str(out / "lin__onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"]) \
        .run(None, {"x": x})[0]
    import torch

    torch.manual_seed(0)
    fc = torch.nn.Linear(4, 3)
    np.testing.assert_allclose(y, fc(torch.from_numpy(x)).detach().numpy() * -5.0, atol=1e-5)


@pytest.mark.slow
def test_failed_variant_is_tried_again_on_the_next_run(workdir):
    # fp16 weights can never equal fp32 PyTorch bit for bit: a gate of zero tolerance fails on any CPU
    spec = _spec(workdir, variants=[{"name": "onnx-fp16", "verify": {"atol": 0, "rtol": 0}}])
    out, bdir = workdir / "model_repository", workdir / "build"
    r1 = build(spec, out, bdir).results[0]
    assert r1.status == "failed", r1.reason
    log = bdir / "lin" / "onnx-fp16" / "build.log"
    t1 = log.stat().st_mtime_ns
    r2 = build(spec, out, bdir).results[0]
    assert r2.status == "failed" and r2.verification is not None
    assert log.stat().st_mtime_ns != t1  # built and verified again, not read from the cache


@pytest.mark.slow
def test_validate_trusts_the_build_only_for_the_very_same_files(workdir):
    import onnx

    from generator.formats.repository import validated_by_build
    from generator.config.validate import validate_repository

    spec = _spec(workdir)
    out = workdir / "model_repository"
    build(spec, out, workdir / "build")
    mdir = out / "lin__onnx"
    assert validated_by_build(mdir)
    assert not [p for r in validate_repository(out) for p in r.problems]
    path = mdir / "1" / "model.onnx"
    proto = onnx.load(str(path))
    proto.graph.output[0].name = "z"  # the config still says y
    proto.graph.node[-1].output[0] = "z"
    path.unlink()  # a new file, as an editor or a copy would make
    onnx.save(proto, str(path))
    assert not validated_by_build(mdir)
    problems = [p for r in validate_repository(out) for p in r.problems]
    assert any("'y'" in p for p in problems), problems
