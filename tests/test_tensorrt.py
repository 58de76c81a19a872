"""generator.stages.tensorrt without TensorRT: profiles, config checks, trtexec, provenance, config text.

The real build is in tests/gpu/test_tensorrt_gpu.py (skipped where ``tensorrt`` is absent).
"""

from __future__ import annotations

import shlex
import types
from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from generator.stages import tensorrt as T
from generator.errors import UserError
from generator.spec import parse_spec

KNOWN = ("onnx", "trt-fp32", "trt-fp16", "trt-int8", "onnx-trt")
SOURCE = {"factory": "examples.cnn:make"}


def spec(**model):
    m = {"name": "m", "source": SOURCE, "max_batch_size": 8, **model}
    return parse_spec({"models": [m]}, Path("spec.yaml").resolve(), known_variants=KNOWN).models[0]


def image_model(**kw):
    kw.setdefault("inputs", [{"name": "images", "dtype": "float32", "shape": [3, 224, 224]}])
    kw.setdefault("outputs", [{"name": "logits", "dtype": "float32", "shape": [1000]}])
    return spec(**kw)


def text_model(**kw):
    kw.setdefault("dims", {"seq": [1, 128, 512]})
    kw.setdefault(
        "inputs",
        [
            {"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 1000]},
            {"name": "attention_mask", "dtype": "int64", "shape": ["seq"], "range": [0, 2]},
        ],
    )
    kw.setdefault("outputs", [{"name": "hidden", "dtype": "float32", "shape": ["seq", 64]}])
    return spec(**kw)


def variant(model, name):
    return next(v for v in model.variants if v.name == name)


# --------------------------------------------------------------------------- profiles


def test_image_profile_opt_is_largest_preferred_batch():
    m = image_model(max_batch_size=32, triton={"dynamic_batching": {"preferred_batch_size": [4, 16]}})
    (p,) = T.profiles_for(m)
    assert p.batch == (1, 16, 32)
    assert p["images"] == ((1, 3, 224, 224), (16, 3, 224, 224), (32, 3, 224, 224))
    assert p.dynamic


def test_image_profile_opt_is_max_batch_without_preferred_sizes():
    (p,) = T.profiles_for(image_model(max_batch_size=8))
    assert p.batch == (1, 8, 8)
    assert p["images"][1] == (8, 3, 224, 224)


def test_text_profile_uses_named_dim():
    (p,) = T.profiles_for(text_model())
    assert p.names == ("input_ids", "attention_mask")
    assert p["input_ids"] == ((1, 1), (8, 128), (8, 512))
    assert p["attention_mask"] == p["input_ids"]
    assert p.dim("seq") == (1, 128, 512)


def test_no_batch_dim_when_max_batch_size_is_zero():
    (p,) = T.profiles_for(text_model(max_batch_size=0))
    assert p.batch is None
    assert p["input_ids"] == ((1,), (128,), (512,))
    (s,) = T.profiles_for(image_model(max_batch_size=0))
    assert s["images"] == ((3, 224, 224),) * 3
    assert not s.dynamic


def test_several_profiles_from_variant_options():
    m = text_model(
        max_batch_size=32,
        variants=[
            "onnx",
            {"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 4]}, {"batch": [5, 16, 32], "seq": [64, 256, 512]}]}},
        ],
        triton={"instance_group": [{"kind": "KIND_GPU", "profile": ["0"]}, {"kind": "KIND_GPU", "profile": ["1"]}]},
    )
    p0, p1 = T.profiles_for(m, variant(m, "trt-fp16"))
    assert p0["input_ids"] == ((1, 1), (1, 128), (4, 512))  # seq from the model's dims
    assert p1["input_ids"] == ((5, 64), (16, 256), (32, 512))
    assert p1.as_dict()["shapes"]["attention_mask"] == {"min": [5, 64], "opt": [16, 256], "max": [32, 512]}


@pytest.mark.parametrize(
    "profiles, message",
    [
        ("x", "models[0].variants[1].options.profiles: expected a non-empty list"),
        ([], "models[0].variants[1].options.profiles: expected a non-empty list"),
        ([{"batch": [1, 1, 4]}, {"batch": [8, 4, 32]}], "models[0].variants[1].options.profiles[1].batch: need min <= opt <= max, got [8, 4, 32]"),
        ([{"batch": [1, 2]}], "models[0].variants[1].options.profiles[0].batch: expected [min, opt, max] integers"),
        ([{"batch": [0, 1, 4]}], "profiles[0].batch: min must be >= 1, got 0"),
        ([{"batch": [1, 8, 64]}], "models[0].variants[1].options.profiles[0].batch: max 64 > max_batch_size 32"),
        ([{"height": [1, 1, 1]}], "models[0].variants[1].options.profiles[0].height: not a dim of this model; allowed keys: batch, seq"),
        ([{"seq": [1, 600, 512]}], "profiles[0].seq: need min <= opt <= max, got [1, 600, 512]"),
        ([{}], "models[0].variants[1].options.profiles[0]: expected a mapping"),
    ],
)
def test_profile_option_errors_name_the_field(profiles, message):
    m = text_model(max_batch_size=32, variants=["onnx", {"name": "trt-fp16", "options": {"profiles": profiles}}])
    with pytest.raises(UserError) as e:
        T.profiles_for(m, variant(m, "trt-fp16"))
    assert message in str(e.value)


def test_batch_key_refused_without_batch_dim():
    m = text_model(max_batch_size=0, variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 1]}]}}])
    with pytest.raises(UserError, match=r"models\[0\]\.variants\[0\]\.options\.profiles\[0\]\.batch: the model has max_batch_size 0"):
        T.profiles_for(m, m.variants[0])


# --------------------------------------------------------------------------- config checks


def test_default_profile_passes_checks():
    m = text_model(max_batch_size=16, triton={"dynamic_batching": {"preferred_batch_size": [4, 8]}})
    T.check_config_against_profiles(m, T.profiles_for(m))


def test_refuses_max_batch_size_over_profile_max():
    m = image_model(max_batch_size=32)
    small = T.profiles_for(image_model(max_batch_size=16))
    with pytest.raises(UserError) as e:
        T.check_config_against_profiles(m, small)
    msg = str(e.value)
    assert "models[0].max_batch_size: 32 > 16, the largest batch of TensorRT profile 0 (used by the default instance group)" in msg


def test_refuses_preferred_size_outside_profiles():
    m = image_model(
        max_batch_size=32,
        triton={"dynamic_batching": {"preferred_batch_size": [2, 6]}},
        variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 4]}, {"batch": [8, 16, 32]}]}}],
    )
    m2 = image_model(
        max_batch_size=32,
        triton={
            "dynamic_batching": {"preferred_batch_size": [2, 6]},
            "instance_group": [{"kind": "KIND_GPU", "profile": ["0", "1"]}],
        },
        variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 4]}, {"batch": [8, 16, 32]}]}}],
    )
    # No group names profiles: only profile 0 is used, and it stops at 4.
    with pytest.raises(UserError, match=r"max_batch_size: 32 > 4, the largest batch of TensorRT profile 0"):
        T.check_config_against_profiles(m, T.profiles_for(m, m.variants[0]))
    with pytest.raises(UserError) as e:
        T.check_config_against_profiles(m2, T.profiles_for(m2, m2.variants[0]))
    assert str(e.value).startswith(
        "models[0].triton.dynamic_batching.preferred_batch_size[1]: 6 is in no batch range of TensorRT profiles 0, 1 "
        "(used by models[0].triton.instance_group[0]) (batch 1-4, 8-32)"
    )


def test_refuses_batch_gap_between_profiles():
    m = image_model(
        max_batch_size=32,
        triton={"instance_group": [{"kind": "KIND_GPU", "profile": ["0", "1"]}]},
        variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 4]}, {"batch": [8, 16, 32]}]}}],
    )
    with pytest.raises(UserError, match=r"max_batch_size: 32, but batch sizes 5-7 are in no batch range"):
        T.check_config_against_profiles(m, T.profiles_for(m, m.variants[0]))


def test_refuses_profile_not_covering_named_dim():
    m = text_model(variants=[{"name": "trt-fp16", "options": {"profiles": [{"seq": [1, 64, 256]}]}}])
    with pytest.raises(UserError) as e:
        T.check_config_against_profiles(m, T.profiles_for(m, m.variants[0]))
    assert "models[0].dims.seq: declared [1, 512] but TensorRT profile 0" in str(e.value)
    assert "cover seq 1-256 (missing 257-512)" in str(e.value)


def test_refuses_unknown_profile_index():
    m = image_model(triton={"instance_group": [{"kind": "KIND_GPU", "profile": ["1"]}]})
    with pytest.raises(UserError) as e:
        T.check_config_against_profiles(m, T.profiles_for(m))
    assert str(e.value) == (
        "models[0].triton.instance_group[0].profile[0]: '1' is not a profile index of this plan "
        "(it has 1 profile: 0); list several under the variant's options.profiles"
    )


def test_static_model_passes_checks():
    m = image_model(max_batch_size=0)
    T.check_config_against_profiles(m, T.profiles_for(m))


# --------------------------------------------------------------------------- trtexec


def test_trtexec_argv_exact_one_profile():
    (p,) = T.profiles_for(text_model())
    argv = T.trtexec_command("w/m.onnx", "w/model.plan", [p], "fp16", 1024, "w/timing.cache")
    assert argv == [
        "trtexec",
        "--onnx=w/m.onnx",
        "--saveEngine=w/model.plan",
        "--minShapes=input_ids:1x1,attention_mask:1x1",
        "--optShapes=input_ids:8x128,attention_mask:8x128",
        "--maxShapes=input_ids:8x512,attention_mask:8x512",
        "--fp16",
        "--memPoolSize=workspace:1024M",
        "--builderOptimizationLevel=3",
        "--timingCacheFile=w/timing.cache",
    ]


def test_trtexec_argv_exact_two_profiles_int8():
    m = image_model(max_batch_size=32, variants=[{"name": "trt-int8", "options": {"profiles": [{"batch": [1, 1, 4]}, {"batch": [5, 16, 32]}]}}])
    ps = T.profiles_for(m, m.variants[0])
    argv = T.trtexec_command(Path("a.onnx"), Path("b.plan"), ps, "int8", 2048, Path("t.cache"), calib_cache=Path("calib.cache"), builder_optimization_level=5)
    assert argv == [
        "trtexec",
        "--onnx=a.onnx",
        "--saveEngine=b.plan",
        "--minShapes=images:1x3x224x224",
        "--optShapes=images:1x3x224x224",
        "--maxShapes=images:4x3x224x224",
        "--minShapes=images:5x3x224x224",
        "--optShapes=images:16x3x224x224",
        "--maxShapes=images:32x3x224x224",
        "--int8",
        "--calib=calib.cache",
        "--memPoolSize=workspace:2048M",
        "--builderOptimizationLevel=5",
        "--timingCacheFile=t.cache",
    ]


def test_trtexec_fp32_static_and_quoted_names():
    (s,) = T.profiles_for(image_model(max_batch_size=0))
    argv = T.trtexec_command("a.onnx", "b.plan", [s], "fp32", 512, "t.cache", builder_optimization_level=None)
    assert argv == ["trtexec", "--onnx=a.onnx", "--saveEngine=b.plan", "--noTF32", "--memPoolSize=workspace:512M", "--timingCacheFile=t.cache"]
    m = image_model(inputs=[{"name": "input:0", "dtype": "float32", "shape": [3, 8, 8]}])
    (p,) = T.profiles_for(m)
    assert "--minShapes='input:0':1x3x8x8" in T.trtexec_command("a", "b", [p], "best", 1, "t")
    assert "--best" in T.trtexec_command("a", "b", [p], "best", 1, "t")
    with pytest.raises(ValueError):
        T.trtexec_command("a", "b", [p], "tf32", 1, "t")


def test_reproduce_script_has_container_line(tmp_path):
    (p,) = T.profiles_for(image_model())
    d = tmp_path / "repo"
    script = T.reproduce_script(d / "m" / "model.onnx", d / "m" / "1" / "model.plan", [p], "fp16", 1024, d / "m" / "timing.cache", "24.10")
    assert script.startswith("#!/usr/bin/env bash\n")
    assert f"WORKDIR=${{WORKDIR:-{d / 'm'}}}" in script
    assert 'docker run --gpus all --rm -v "$WORKDIR":/w -w /w nvcr.io/nvidia/tensorrt:24.10-py3 \\\n  trtexec --onnx=model.onnx --saveEngine=1/model.plan' in script
    assert "TensorRT 10.5.0.18" in script
    cmd_line = next(line for line in script.splitlines() if line.startswith("  trtexec"))
    assert shlex.split(cmd_line) == T.trtexec_command("model.onnx", "1/model.plan", [p], "fp16", 1024, "timing.cache")
    with pytest.raises(UserError, match="known: 24.01"):
        T.reproduce_script("a.onnx", "b.plan", [p], "fp16", 1, "t", "19.05")


# --------------------------------------------------------------------------- Triton -> TensorRT, provenance


def test_triton_trt_table():
    assert T.trt_version_for_triton("24.10") == "10.5.0.18"
    assert T.trt_version_for_triton("r24.10") == "10.5.0.18"
    assert T.trt_version_for_triton("25.01-py3") == "10.8.0.43"
    assert T.trt_version_for_triton("24.02").startswith("8.6")
    assert T.tensorrt_container("r25.03") == "nvcr.io/nvidia/tensorrt:25.03-py3"
    with pytest.raises(UserError) as e:
        T.trt_version_for_triton("23.05", where="triton.release")
    assert str(e.value).startswith("triton.release: Triton release '23.05' is not in tritongen's TensorRT table; known: 24.01, 24.02")
    # releases in order, versions never go backwards
    versions = [tuple(int(x) for x in v.split(".")) for v in T.TRITON_TRT.values()]
    assert versions == sorted(versions)
    assert list(T.TRITON_TRT) == sorted(T.TRITON_TRT)


def test_provenance_warnings():
    ok = {"tensorrt_version": "10.5.0", "compute_capability": "9.0", "gpu": "NVIDIA H100"}
    assert T.check_provenance(ok, "24.10", "9.0") == []
    assert T.check_provenance(ok, "24.10") == []
    (w,) = T.check_provenance(ok, "25.01", "9.0")
    assert "plan built with TensorRT 10.5.0 but tritonserver:25.01-py3 bundles TensorRT 10.8.0.43" in w
    assert "nvcr.io/nvidia/tensorrt:25.01-py3" in w
    (w,) = T.check_provenance(ok, "24.10", "8.6")
    assert "plan built on compute capability 9.0 (NVIDIA H100) but the target GPU is 8.6" in w
    ws = T.check_provenance({}, "24.10", "8.0")
    assert len(ws) == 2 and "no recorded TensorRT version" in ws[0]
    with pytest.raises(UserError):
        T.check_provenance(ok, "99.99")


# --------------------------------------------------------------------------- builder


def test_build_engine_skips_without_tensorrt(tmp_path):
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("tensorrt is importable here; the skip path is not reachable")
    (p,) = T.profiles_for(image_model())
    with pytest.raises(T.TensorRTUnavailable) as e:
        T.build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", [p], "fp16", tmp_path / "t.cache", 1 << 30)
    assert e.value.reason.startswith("TensorRT not importable")
    assert "\n" not in e.value.reason


def test_build_engine_no_gpu(monkeypatch, tmp_path):
    fake_trt = types.SimpleNamespace(__version__="10.5.0", Builder=object)
    monkeypatch.setattr(T, "_import_tensorrt", lambda: fake_trt)
    monkeypatch.setattr(T.shutil, "which", lambda name: None)
    monkeypatch.setitem(__import__("sys").modules, "torch", types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: False)))
    (p,) = T.profiles_for(image_model())
    with pytest.raises(T.TensorRTUnavailable, match="^no GPU"):
        T.build_engine(tmp_path / "m.onnx", tmp_path / "m.plan", [p], "fp16", tmp_path / "t.cache", 1 << 30)


class _Recorder:
    """Stands in for the Polygraphy loaders and records how they were called."""

    def __init__(self):
        self.calls = []

    def fn(self, name, result=None, effect=None):
        def f(*args, **kwargs):
            self.calls.append((name, args, kwargs))
            if effect:
                effect(*args, **kwargs)
            return result if result is not None else name
        return f


class _FakeProfile(dict):
    def add(self, name, min, opt, max):
        self[name] = (min, opt, max)
        return self


def _substitute(monkeypatch, rec):
    fake_trt = types.SimpleNamespace(
        __version__="10.5.0.18",
        Builder=object,
        MemoryPoolType=types.SimpleNamespace(WORKSPACE="WORKSPACE"),
        IInt8EntropyCalibrator2="EntropyBase",
        IInt8MinMaxCalibrator="MinMaxBase",
    )
    monkeypatch.setattr(T, "_import_tensorrt", lambda: fake_trt)
    monkeypatch.setattr(T, "_gpu_info", lambda: {"gpu": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"})
    monkeypatch.setattr(T, "PolygraphyProfile", _FakeProfile)
    monkeypatch.setattr(T, "CreateConfig", rec.fn("CreateConfig", result="CONFIG"))
    monkeypatch.setattr(T, "Calibrator", rec.fn("Calibrator", result="CALIBRATOR"))
    monkeypatch.setattr(T, "network_from_onnx_path", rec.fn("network_from_onnx_path", result="NETWORK"))
    monkeypatch.setattr(T, "engine_from_network", rec.fn("engine_from_network", result="ENGINE"))
    monkeypatch.setattr(
        T, "save_engine",
        rec.fn("save_engine", result="ENGINE", effect=lambda engine, path: Path(path).write_bytes(b"plan")),
    )


def test_build_engine_polygraphy_calls(monkeypatch, tmp_path):
    """The Polygraphy builder path, with the Polygraphy loaders substituted.

    A substitute is used because the TensorRT builder cannot be installed anywhere in this
    workplace (its libraries are not on the package registry, and the lent GPU machines do not
    carry it): Polygraphy's loaders need ``tensorrt`` the moment they run. This test pins what
    tritongen asks Polygraphy for (CreateConfig/Profile arguments, the order of the loaders, the
    timing cache and plan paths); tests/gpu/test_tensorrt_gpu.py runs the real thing where
    TensorRT exists.
    """
    rec = _Recorder()
    _substitute(monkeypatch, rec)
    m = text_model(max_batch_size=32, variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 4]}, {"batch": [5, 16, 32]}]}}])
    ps = T.profiles_for(m, m.variants[0])
    prov = T.build_engine(tmp_path / "m.onnx", tmp_path / "1" / "model.plan", ps, "fp16", tmp_path / "cache" / "timing.cache", 1 << 30)

    names = [c[0] for c in rec.calls]
    assert names == ["CreateConfig", "network_from_onnx_path", "engine_from_network", "save_engine"]
    _, args, kw = rec.calls[0]
    assert args == ()
    assert kw == {
        "tf32": True,
        "fp16": True,
        "int8": False,
        "profiles": [
            {"input_ids": ((1, 1), (1, 128), (4, 512)), "attention_mask": ((1, 1), (1, 128), (4, 512))},
            {"input_ids": ((5, 1), (16, 128), (32, 512)), "attention_mask": ((5, 1), (16, 128), (32, 512))},
        ],
        "load_timing_cache": str(tmp_path / "cache" / "timing.cache"),
        "memory_pool_limits": {"WORKSPACE": 1 << 30},
        "builder_optimization_level": 3,
    }
    assert all(type(p) is _FakeProfile for p in kw["profiles"])
    assert rec.calls[1][1] == (str(tmp_path / "m.onnx"),)
    assert rec.calls[2][1:] == (("NETWORK",), {"config": "CONFIG", "save_timing_cache": str(tmp_path / "cache" / "timing.cache")})
    assert rec.calls[3][1:] == (("ENGINE",), {"path": str(tmp_path / "1" / "model.plan")})

    assert prov["tensorrt_version"] == "10.5.0.18"
    assert prov["gpu"] == "NVIDIA H100 80GB HBM3" and prov["compute_capability"] == "9.0"
    assert prov["builder_flags"] == {"tf32": True, "fp16": True, "int8": False}
    assert prov["precision"] == "fp16" and prov["int8_mode"] is None
    assert prov["plan_bytes"] == 4 and len(prov["plan_sha256"]) == 64
    assert prov["profiles"][1]["batch"] == [5, 16, 32]
    assert T.check_provenance(prov, "24.10", "9.0") == []


def test_build_engine_int8_calibrator_and_fp32(monkeypatch, tmp_path):
    """int8 with calibration data gets a Polygraphy Calibrator on TensorRT's calibrator class;
    fp32 turns TF32 off; a static model passes no profiles. (Substitutes: see the test above.)"""
    rec = _Recorder()
    _substitute(monkeypatch, rec)
    (p,) = T.profiles_for(image_model())
    data = [{"images": "batch0"}, {"images": "batch1"}]
    prov = T.build_engine("m.onnx", tmp_path / "p.plan", [p], "int8", tmp_path / "t.cache", 256 << 20,
                          builder_optimization_level=None, calibrator_data=data, calib_cache=tmp_path / "calib.cache",
                          calibration_method="minmax")
    (cal,) = [c for c in rec.calls if c[0] == "Calibrator"]
    assert cal[1] == (data,) and cal[2] == {"cache": str(tmp_path / "calib.cache"), "BaseClass": "MinMaxBase"}
    cfg = next(c for c in rec.calls if c[0] == "CreateConfig")[2]
    assert cfg["int8"] is True and cfg["fp16"] is False and cfg["calibrator"] == "CALIBRATOR"
    assert "builder_optimization_level" not in cfg
    assert prov["int8_mode"] == "implicit (IInt8MinMaxCalibrator, calibration data)"

    rec.calls.clear()
    (s,) = T.profiles_for(image_model(max_batch_size=0))
    prov = T.build_engine("m.onnx", tmp_path / "q.plan", [s], "fp32", tmp_path / "t.cache", 1 << 30)
    cfg = rec.calls[0][2]
    assert cfg["tf32"] is False and cfg["fp16"] is False and cfg["int8"] is False and cfg["profiles"] is None
    assert "calibrator" not in cfg

    rec.calls.clear()
    prov = T.build_engine("m.onnx", tmp_path / "r.plan", [p], "int8", tmp_path / "t.cache", 1 << 30)
    assert prov["int8_mode"] == "explicit (Q/DQ in the ONNX)"
    assert not any(c[0] == "Calibrator" for c in rec.calls)


def test_trt_calibration_method():
    assert T.trt_calibration_method(image_model(calibration={"method": "entropy"})) == "entropy"
    with pytest.raises(UserError, match=r"models\[0\]\.calibration\.method: 'percentile' has no TensorRT calibrator"):
        T.trt_calibration_method(image_model(calibration={"method": "percentile"}))


# --------------------------------------------------------------------------- config text


def _config(body: str, max_batch_size: int = 8, platform: str = 'backend: "onnxruntime"'):
    text = (
        f'name: "m"\n{platform}\nmax_batch_size: {max_batch_size}\n'
        'input [ { name: "images" data_type: TYPE_FP32 dims: [ 3, 224, 224 ] } ]\n'
        'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 1000 ] } ]\n'
    ) + body
    return text_format.Parse(text, model_config_pb2.ModelConfig())


def test_ort_trt_accelerator_values():
    acc = T.ort_trt_accelerator("fp16", 1 << 30, engine_cache_path="/tmp")
    assert acc == {
        "name": "tensorrt",
        "parameters": {
            "precision_mode": "FP16",
            "max_workspace_size_bytes": "1073741824",
            "trt_engine_cache_enable": "1",
            "trt_engine_cache_path": "/tmp",
        },
    }
    assert "trt_engine_cache_enable" not in T.ort_trt_accelerator("fp32", engine_cache=False)["parameters"]
    with pytest.raises(ValueError):
        T.ort_trt_accelerator("best")


def _rendered(model, variant: str, **options):
    """The live config path (generator/config/render.py), parsed back with Triton's schema."""
    from generator.config.render import config_context, render
    from generator.spec import VariantSpec
    from generator.variants import REGISTRY

    v = REGISTRY[variant]
    ctx = config_context(model, v, VariantSpec(name=variant, options=options))
    return text_format.Parse(render(ctx, v.template), model_config_pb2.ModelConfig())


GPU = {"instance_group": [{"count": 1, "kind": "KIND_GPU"}]}


def test_ort_trt_accelerator_is_rendered_into_the_onnx_config():
    cfg = _rendered(image_model(triton=GPU), "onnx",
                    trt_accelerator={"precision": "fp16", "workspace_mb": 1024, "engine_cache_path": "/tmp/trt cache"})
    assert cfg.platform == "onnxruntime_onnx"
    (acc,) = cfg.optimization.execution_accelerators.gpu_execution_accelerator
    assert acc.name == "tensorrt"
    assert dict(acc.parameters) == {
        "precision_mode": "FP16",
        "max_workspace_size_bytes": "1073741824",
        "trt_engine_cache_enable": "1",
        "trt_engine_cache_path": "/tmp/trt cache",
        "trt_profile_min_shapes": "images:1x3x224x224",
        "trt_profile_opt_shapes": "images:8x3x224x224",
        "trt_profile_max_shapes": "images:8x3x224x224",
    }
    assert not cfg.optimization.execution_accelerators.cpu_execution_accelerator
    int8 = _rendered(image_model(triton=GPU), "onnx", trt_accelerator={"precision": "int8", "workspace_mb": 2048})
    params = dict(int8.optimization.execution_accelerators.gpu_execution_accelerator[0].parameters)
    assert (params["precision_mode"], params["max_workspace_size_bytes"]) == ("INT8", "2147483648")


def test_plan_config_keeps_the_gpu_groups_with_their_profiles_and_cuda_graphs():
    m = image_model(
        max_batch_size=32,
        triton={"instance_group": [{"count": 2, "profile": ["0"], "gpus": [0]}, {"kind": "KIND_GPU", "profile": ["1"]}]},
        variants=[{"name": "trt-fp16", "options": {"profiles": [{"batch": [1, 1, 32]}, {"batch": [1, 32, 32]}]}}],
    )
    cfg = _rendered(m, "trt-fp16", **m.variants[0].options, cuda_graphs=True)
    assert (cfg.platform, cfg.max_batch_size) == ("tensorrt_plan", 32)
    # the KIND_CPU group (the spec's default kind) cannot run a plan: only the KIND_GPU one stays
    assert [(g.count, g.kind, list(g.gpus), list(g.profile)) for g in cfg.instance_group] == [
        (1, model_config_pb2.ModelInstanceGroup.KIND_GPU, [], ["1"]),
    ]
    assert cfg.optimization.cuda.graphs is True

    plain = _rendered(image_model(), "trt-fp16")
    assert [(g.count, g.kind) for g in plain.instance_group] == [(1, model_config_pb2.ModelInstanceGroup.KIND_GPU)]
    assert not plain.optimization.cuda.graphs


def test_plan_config_that_names_a_missing_profile_is_a_user_error():
    m = image_model(triton={"instance_group": [{"kind": "KIND_GPU", "profile": ["1"]}]})
    with pytest.raises(UserError, match=r"instance_group\[0\]\.profile\[0\]: '1' is not a profile index of this plan"):
        _rendered(m, "trt-fp16")
