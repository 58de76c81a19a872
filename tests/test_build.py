"""End to end on tiny models: spec -> repository, checked the way Triton and a user would check it.

Outputs are compared with PyTorch here in the test (independently of the pipeline's own
verification), configs are parsed with Triton's model_config_pb2, and the second run must rebuild
nothing.
"""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from generator.build.pipeline import build
from generator.spec import load_spec
from specs import cnn_model, linear_model, text_model, vit_model, write_spec

pytestmark = pytest.mark.slow


def _build(workdir, models, **kw):
    spec = load_spec(write_spec(workdir, {"models": models}))
    return spec, build(spec, workdir / "model_repository", workdir / "build", **kw)


def _config(path):
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def test_vit_and_cnn_build_verified_repository(workdir):
    spec, report = _build(workdir, [vit_model(variants=["onnx", "torchscript"]), cnn_model()])
    repo = workdir / "model_repository"
    assert {r.status for r in report.results} == {"built"}
    assert sorted(p.name for p in repo.iterdir() if p.is_dir()) == ["cnn__onnx", "vit__onnx", "vit__torchscript"]

    cfg = _config(repo / "vit__onnx" / "config.pbtxt")
    assert cfg.name == "vit__onnx" and cfg.platform == "onnxruntime_onnx"
    assert cfg.max_batch_size == 4
    assert list(cfg.input[0].dims) == [3, 32, 32] and cfg.input[0].data_type == model_config_pb2.TYPE_FP32
    assert list(cfg.dynamic_batching.preferred_batch_size) == [2, 4]
    assert [w.batch_size for w in cfg.model_warmup] == [1, 4]
    assert _config(repo / "vit__torchscript" / "config.pbtxt").platform == "pytorch_libtorch"

    # the artifact, run by ONNX Runtime, equals PyTorch at batch 3 (not a verification point)
    from examples.vit import vit_tiny

    x = np.random.default_rng(7).standard_normal((3, 3, 32, 32)).astype(np.float32)
    ref = vit_tiny()(torch.from_numpy(x)).detach().numpy()
    sess = ort.InferenceSession(str(repo / "vit__onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"pixel_values": x})[0], ref, atol=1e-4, rtol=1e-3)
    ts = torch.jit.load(str(repo / "vit__torchscript" / "1" / "model.pt"))
    np.testing.assert_allclose(ts(torch.from_numpy(x)).detach().numpy(), ref, atol=1e-5)

    manifest = json.loads((repo / "cnn__onnx" / "manifest.json").read_text())
    assert manifest["verification"]["passed"] is True
    assert manifest["verification"]["max_abs"] < 1e-4
    assert {c["point"] for c in manifest["verification"]["checks"]} == {"batch=1", "batch=4"}
    assert manifest["tool_versions"]["torch"].startswith("2.")
    assert manifest["info"]["nodes_optimized"] <= manifest["info"]["nodes_exported"]
    assert manifest["files"][0]["path"] == "model.onnx" and len(manifest["files"][0]["sha256"]) == 64
    assert (workdir / "build" / "cnn" / "onnx" / "reproduce.sh").read_text().startswith("#!/usr/bin/env bash")


def test_cnn_graph_has_no_batchnorm_left(workdir):
    import onnx

    _build(workdir, [cnn_model()])
    g = onnx.load(str(workdir / "model_repository" / "cnn__onnx" / "1" / "model.onnx")).graph
    ops = {n.op_type for n in g.node}
    assert "BatchNormalization" not in ops and "Conv" in ops


def test_text_model_with_named_dims_and_two_outputs(workdir):
    _, report = _build(workdir, [text_model(variants=["onnx", "torchscript"])])
    assert [r.status for r in report.results] == ["built", "built"]
    repo = workdir / "model_repository"
    cfg = _config(repo / "text__onnx" / "config.pbtxt")
    assert [list(t.dims) for t in cfg.input] == [[-1], [-1]]
    assert [list(t.dims) for t in cfg.output] == [[16], [-1, 5]]
    assert cfg.input[0].data_type == model_config_pb2.TYPE_INT64
    # warm-up uses the opt size for named dims and zeros for token ids
    assert list(cfg.model_warmup[0].inputs["input_ids"].dims) == [8]
    assert cfg.model_warmup[0].inputs["input_ids"].zero_data
    points = {c["point"] for c in report.results[0].verification["checks"]}
    assert {"batch=1,seq=8", "batch=4,seq=8", "batch=1,seq=1", "batch=1,seq=16"} == points

    from tinymodels.tiny import text_model as make

    ids = np.random.default_rng(1).integers(0, 50, (2, 11)).astype(np.int64)
    mask = np.ones_like(ids)
    ref = [t.detach().numpy() for t in make()(torch.from_numpy(ids), torch.from_numpy(mask))]
    sess = ort.InferenceSession(str(repo / "text__onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = sess.run(["pooled", "token_logits"], {"input_ids": ids, "attention_mask": mask})
    for g, r in zip(got, ref):
        np.testing.assert_allclose(g, r, atol=1e-4, rtol=1e-3)


def test_second_run_rebuilds_nothing_and_leaves_repository_untouched(workdir):
    spec, first = _build(workdir, [linear_model(variants=["onnx", "torchscript"])])
    art = workdir / "build" / "lin" / "onnx" / "artifact" / "model.onnx"
    mtime = art.stat().st_mtime_ns
    cfg_mtime = (workdir / "model_repository" / "lin__onnx" / "config.pbtxt").stat().st_mtime_ns
    second = build(spec, workdir / "model_repository", workdir / "build")
    assert [r.status for r in second.results] == ["cached", "cached"]
    assert second.changed is False
    assert art.stat().st_mtime_ns == mtime
    assert (workdir / "model_repository" / "lin__onnx" / "config.pbtxt").stat().st_mtime_ns == cfg_mtime
    assert second.results[0].verification == first.results[0].verification


def test_changing_the_spec_rebuilds_only_that_model(workdir):
    _build(workdir, [linear_model(), cnn_model()])
    _, report = _build(workdir, [linear_model(max_batch_size=8), cnn_model()])
    assert {r.model: r.status for r in report.results} == {"lin": "built", "cnn": "cached"}
    assert _config(workdir / "model_repository" / "lin__onnx" / "config.pbtxt").max_batch_size == 8


def test_only_rebuilds_one_model_and_keeps_the_others(workdir):
    spec, _ = _build(workdir, [linear_model(), cnn_model()])
    report = build(spec, workdir / "model_repository", workdir / "build", only=("lin",), force=True)
    assert [(r.model, r.status) for r in report.results] == [("lin", "built")]
    assert (workdir / "model_repository" / "cnn__onnx" / "1" / "model.onnx").is_file()


def test_full_build_drops_models_removed_from_the_spec(workdir):
    _build(workdir, [linear_model(), cnn_model()])
    _build(workdir, [linear_model()])
    assert not (workdir / "model_repository" / "cnn__onnx").exists()


def test_no_batching_model(workdir):
    _, report = _build(workdir, [linear_model(max_batch_size=0, inputs=[{"name": "x", "dtype": "float32", "shape": [2, 4]}],
                                              outputs=[{"name": "y", "dtype": "float32", "shape": [2, 3]}])])
    assert report.results[0].status == "built"
    cfg_text = (workdir / "model_repository" / "lin__onnx" / "config.pbtxt").read_text()
    cfg = text_format.Parse(cfg_text, model_config_pb2.ModelConfig())
    assert "max_batch_size: 0" in cfg_text and not cfg.HasField("dynamic_batching")
    assert list(cfg.input[0].dims) == [2, 4]


def test_variant_over_tolerance_is_not_written_and_reported(workdir):
    # zero tolerance: the fused conv-bn graph differs from PyTorch in the last bits, TorchScript does not
    _, report = _build(workdir, [cnn_model(variants=[{"name": "onnx", "verify": {"atol": 0, "rtol": 0}}, "torchscript"])])
    status = {r.variant: r for r in report.results}
    assert status["torchscript"].status == "built"
    assert status["onnx"].status == "failed" and "gate failed" in status["onnx"].reason
    assert "abs/rel:" in status["onnx"].reason and "over atol 0 + rtol 0" in status["onnx"].reason
    assert not (workdir / "model_repository" / "cnn__onnx").exists()
    assert (workdir / "model_repository" / "cnn__torchscript").exists()


def test_keep_failed_writes_the_variant_marked_in_manifest(workdir):
    _build(workdir, [cnn_model(variants=[{"name": "onnx", "verify": {"atol": 0, "rtol": 0}}])], keep_failed=True)
    manifest = json.loads((workdir / "model_repository" / "cnn__onnx" / "manifest.json").read_text())
    assert manifest["status"] == "failed" and manifest["gate"] == "failed"


def test_custom_templates_override_and_fall_back(workdir):
    tdir = workdir / "mytemplates"
    tdir.mkdir()
    (tdir / "onnxruntime.pbtxt.j2").write_text(
        '{% extends "config.pbtxt.j2" %}{% block extra %}\nparameters { key: "team" value: { string_value: "vision" } }\n{% endblock %}'
    )
    _build(workdir, [linear_model()], templates=tdir)
    cfg = _config(workdir / "model_repository" / "lin__onnx" / "config.pbtxt")
    assert cfg.parameters["team"].string_value == "vision"


def test_changing_only_triton_settings_rerenders_configs_without_rebuilding(workdir):
    _build(workdir, [linear_model()])
    _, report = _build(workdir, [linear_model(triton={"instance_group": [{"count": 3, "kind": "KIND_CPU"}]})])
    assert [r.status for r in report.results] == ["cached"]
    assert report.changed
    assert _config(workdir / "model_repository" / "lin__onnx" / "config.pbtxt").instance_group[0].count == 3


def test_torchscript_and_exported_program_sources(workdir):
    from tinymodels.tiny import linear

    m = linear()
    x = torch.randn(2, 4)
    torch.jit.save(torch.jit.trace(m, (x,)), str(workdir / "lin.ts.pt"))
    batch = torch.export.Dim("batch", min=1, max=8)
    torch.export.save(torch.export.export(m, (x,), dynamic_shapes=({0: batch},)), str(workdir / "lin.pt2"))
    _, report = _build(workdir, [
        linear_model(name="from_ts", source={"torchscript": "lin.ts.pt"}, variants=["onnx", "torchscript"]),
        linear_model(name="from_ep", source={"exported_program": "lin.pt2"}, variants=["onnx"]),
    ])
    assert [(r.model, r.variant, r.status) for r in report.results] == [
        ("from_ts", "onnx", "built"), ("from_ts", "torchscript", "built"), ("from_ep", "onnx", "built")]
    ref = m(torch.from_numpy(np.ones((3, 4), np.float32))).detach().numpy()
    for name in ("from_ts__onnx", "from_ep__onnx"):
        sess = ort.InferenceSession(str(workdir / "model_repository" / name / "1" / "model.onnx"),
                                    providers=["CPUExecutionProvider"])
        np.testing.assert_allclose(sess.run(None, {"x": np.ones((3, 4), np.float32)})[0], ref, atol=1e-5)


def test_corrupt_torchscript_source_is_a_one_line_error(workdir):
    from generator.errors import UserError

    (workdir / "bad.pt").write_bytes(b"garbage")
    spec = load_spec(write_spec(workdir, {"models": [linear_model(source={"torchscript": "bad.pt"})]}))
    with pytest.raises(UserError, match=r"models\[0\].source.torchscript: cannot load 'bad.pt'"):
        build(spec, workdir / "model_repository", workdir / "build")


def test_config_only_option_rerenders_without_rebuilding(workdir):
    _build(workdir, [linear_model()])
    _, report = _build(workdir, [linear_model(variants=[{"name": "onnx", "options": {"trt_accelerator": True}}])])
    assert [r.status for r in report.results] == ["cached"]
    cfg = _config(workdir / "model_repository" / "lin__onnx" / "config.pbtxt")
    assert cfg.optimization.execution_accelerators.gpu_execution_accelerator[0].name == "tensorrt"
