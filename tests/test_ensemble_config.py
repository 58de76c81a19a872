"""Image models with `preprocess:` get a CPU preprocessing model and an ensemble wiring image bytes
-> preprocessing -> the chosen variant, validated like every other config (served in test_serve_e2e)."""

from __future__ import annotations

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import load_spec, parse_spec
from generator.config.validate import validate_repository
from specs import cnn_model, vit_model, write_spec

pytestmark = pytest.mark.slow


def _cfg(p):
    return text_format.Parse(p.read_text(), model_config_pb2.ModelConfig())


def test_ensemble_and_preprocess_configs(workdir):
    m = vit_model(variants=["onnx", "torchscript"], preprocess={"image": {"size": [32, 32], "mean": [0.5, 0.5, 0.5]},
                                                                "variant": "torchscript"})
    spec = load_spec(write_spec(workdir, {"models": [m]}))
    build(spec, workdir / "model_repository", workdir / "build")
    repo = workdir / "model_repository"
    pre = _cfg(repo / "vit__preprocess" / "config.pbtxt")
    # one encoded file per TYPE_STRING element (issue 19: a batch may mix sizes; Triton's ensemble_image_client)
    assert pre.backend == "python" and pre.input[0].data_type == model_config_pb2.TYPE_STRING and list(pre.input[0].dims) == [1]
    assert pre.output[0].name == "pixel_values" and list(pre.output[0].dims) == [3, 32, 32]
    assert pre.parameters["mean"].string_value == "0.5,0.5,0.5"
    assert pre.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert (repo / "vit__preprocess" / "1" / "model.py").is_file()
    ens = _cfg(repo / "vit__ensemble" / "config.pbtxt")
    steps = ens.ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["vit__preprocess", "vit__torchscript"]
    assert dict(steps[1].input_map) == {"pixel_values": "preprocessed"}
    assert dict(steps[1].output_map) == {"logits": "logits"}
    assert ens.input[0].data_type == model_config_pb2.TYPE_STRING and list(ens.input[0].dims) == [1]
    # the model input the preprocessing feeds says its layout, for Triton's image clients
    vit = _cfg(repo / "vit__torchscript" / "config.pbtxt")
    assert vit.input[0].format == model_config_pb2.ModelInput.FORMAT_NCHW
    assert all(r.ok for r in validate_repository(repo))


def test_preprocess_must_match_the_input_shape():
    m = vit_model(preprocess={"image": {"size": [64, 64]}})
    with pytest.raises(UserError, match=r"models\[0\].preprocess.image: input 'pixel_values' is \[3, 32, 32\]"):
        parse_spec({"models": [m]}, __import__("pathlib").Path("/tmp/spec.yaml"))


def test_preprocess_variant_must_be_listed():
    m = vit_model(preprocess={"image": {"size": [32, 32]}, "variant": "torchscript"})
    with pytest.raises(UserError, match=r"models\[0\].preprocess.variant: 'torchscript' is not in this model's variants"):
        parse_spec({"models": [m]}, __import__("pathlib").Path("/tmp/spec.yaml"))


def test_preferred_variant_is_where_the_ensemble_routes(workdir):
    m = cnn_model(variants=["onnx", "onnx-int8"], preferred_variant="onnx-int8",
                  preprocess={"image": {"size": [16, 16]}}, calibration={"samples": 4})
    spec = load_spec(write_spec(workdir, {"models": [m]}))
    assert spec.models[0].ensemble_variant == "onnx-int8"
    report = build(spec, workdir / "model_repository", workdir / "build")
    assert [r.status for r in report.results] == ["built", "built"], [r.reason for r in report.results]
    ens = _cfg(workdir / "model_repository" / "cnn__ensemble" / "config.pbtxt")
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["cnn__preprocess", "cnn__onnx-int8"]


def test_preferred_variant_defaults_to_the_first_and_must_be_listed():
    from pathlib import Path

    m = parse_spec({"models": [cnn_model(variants=["onnx", "torchscript"])]}, Path("/tmp/spec.yaml")).models[0]
    assert m.preferred_variant is None and m.ensemble_variant == "onnx"
    with pytest.raises(UserError, match=r"models\[0\]\.preferred_variant: 'onnx-int8' is not in this model's "
                                         r"variants \(onnx\)"):
        parse_spec({"models": [cnn_model(preferred_variant="onnx-int8")]}, Path("/tmp/spec.yaml"))
