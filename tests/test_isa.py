"""ISA detection (generator/tables/isa.py): classes from CPU flags, ORT's reduce_range advice, and the warning when an
INT8 artifact runs on another class than it was verified on. Flag sets are given explicitly: nothing here
depends on the CPU that runs the tests."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from generator.tables import isa

AVX2 = {"avx2", "fma"}
AVX512 = AVX2 | {"avx512f", "avx512bw", "avx512vl"}


@pytest.mark.parametrize("flags, cls", [
    (set(), "other"),
    (AVX2, "avx2"),
    (AVX2 | {"avx_vnni"}, "avx2-vnni"),
    (AVX512, "avx512"),
    (AVX512 | {"avx512_vnni"}, "avx512-vnni"),
    (AVX512 | {"avx512_vnni", "amx_tile", "amx_int8", "amx_bf16"}, "amx"),
])
def test_isa_class_from_flags(flags, cls):
    assert isa.isa_class(frozenset(flags)) == cls


def test_summary_says_whether_int8_and_bf16_are_fast():
    s = isa.summary(frozenset(AVX512 | {"avx512_vnni", "avx512_bf16"}))
    assert s["class"] == "avx512-vnni" and s["int8_fast"] and s["bf16"] and "avx512_vnni" in s["flags"]
    s = isa.summary(frozenset(AVX2))
    assert s["class"] == "avx2" and not s["int8_fast"] and not s["bf16"]


def test_saturation_cure_follows_ort_advice_for_x86_without_vnni(monkeypatch):
    monkeypatch.setattr(isa.platform, "machine", lambda: "x86_64")
    for cls in ("avx2", "avx512"):  # no VNNI: U8S8 can saturate -> U8U8 static, reduce_range dynamic
        assert isa.quantization_defaults(cls)["weight_type"] == "uint8"
        assert isa.quantization_defaults(cls, static=False)["reduce_range"] is True
    for cls in ("avx512-vnni", "avx2-vnni", "amx"):
        assert isa.quantization_defaults(cls) == {"reduce_range": False, "weight_type": "int8", "activation_type": "uint8"}
        assert isa.quantization_defaults(cls, static=False)["reduce_range"] is False


def test_cpu_flags_can_be_forced_for_emulated_cpus(monkeypatch):
    monkeypatch.setenv("TRITONGEN_CPU_FLAGS", "avx2,fma")
    isa.cpu_flags.cache_clear()
    try:
        assert isa.isa_class() == "avx2" and isa.summary()["flags"] == ["avx2", "fma"]
    finally:
        monkeypatch.delenv("TRITONGEN_CPU_FLAGS")
        isa.cpu_flags.cache_clear()


def test_speed_note_only_where_int8_instructions_are_missing():
    assert "VNNI" in isa.speed_note("int8", "avx2")
    assert isa.speed_note("int8", "avx512-vnni") is None and isa.speed_note("fp32", "avx2") is None


def _manifest(verified: str, precision: str = "int8") -> dict:
    return {"triton_name": "m__onnx-int8", "precision": precision, "isa": {"class": "x"},
            "info": {"isa": {"class": verified}}}


def test_mismatch_warning_names_both_classes_and_the_saturation_risk():
    w = isa.mismatch_warning(_manifest("avx512-vnni"), "avx2")
    assert "avx512-vnni" in w and "avx2" in w and "saturate" in w
    assert isa.mismatch_warning(_manifest("avx2"), "avx2") is None
    assert isa.mismatch_warning(_manifest("avx512-vnni", "fp32"), "avx2") is None


def test_validate_warns_when_an_int8_model_was_verified_on_another_cpu_class(tmp_path):
    from generator.cli import cli

    other = "avx2" if isa.has_vnni(isa.isa_class()) else "avx512-vnni"
    d = tmp_path / "repo" / "m__onnx-int8"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text('name: "m__onnx-int8"\nbackend: "python"\nmax_batch_size: 0\n'
                                    'input [{ name: "x" data_type: TYPE_FP32 dims: [ 4 ] }]\n'
                                    'output [{ name: "y" data_type: TYPE_FP32 dims: [ 4 ] }]\n')
    (d / "manifest.json").write_text(json.dumps(_manifest(other)))
    res = CliRunner().invoke(cli, ["validate", str(tmp_path / "repo")])
    assert f"INT8 verified on a {other} CPU but this one is {isa.isa_class()}" in " ".join(res.output.split())


def test_build_summary_says_what_int8_buys_on_a_cpu_without_vnni(tmp_path, monkeypatch):
    """The CPU is forced to an AVX2 class through TRITONGEN_CPU_FLAGS (detection only: the kernels are this
    machine's), so the summary line and the U8U8 first recipe show whatever CPU runs the test."""
    from generator.cli import cli
    from specs import cnn_model, write_spec

    monkeypatch.setenv("TRITONGEN_CPU_FLAGS", "avx2 fma")
    isa.cpu_flags.cache_clear()
    try:
        spec = write_spec(tmp_path, {"models": [cnn_model(variants=["onnx-int8"])]})
        res = CliRunner().invoke(cli, ["build", str(spec), "-o", str(tmp_path / "repo"), "--build-dir",
                                       str(tmp_path / "build")])
    finally:
        isa.cpu_flags.cache_clear()
    out = " ".join(res.output.split())
    assert res.exit_code == 0, out[-500:]
    assert "has no VNNI/AMX" in out and "cnn/onnx-int8: recipe '" in out
    manifest = json.loads((tmp_path / "repo" / "cnn__onnx-int8" / "manifest.json").read_text())
    assert manifest["isa"]["class"] == "avx2" and manifest["info"]["attempts"][0]["recipe"].endswith("U8U8")
