"""Native-backend rules (generator/config/rules/): for every rule, a real model folder (real ONNX graph,
OpenVINO IR, TorchScript module) whose config breaks it, checked through ``validate_repository`` — the same
path as ``tritongen validate`` and the build. A rule without a case here fails ``test_every_rule_has_a_case``."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from generator.config import rules as backend_rules
from generator.config.validate import validate_repository


class TwoIn(torch.nn.Module):
    def forward(self, x, mask):
        return x * mask, x.sum(dim=1, keepdim=True)


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """model.onnx (dynamic batch), fixed-batch model.onnx, model.xml/.bin (dynamic and static), model.pt."""
    import onnx
    import openvino as ov

    d = tmp_path_factory.mktemp("art")
    torch.manual_seed(0)
    lin = torch.nn.Linear(4, 3).eval()
    raw = d / "raw.onnx"
    torch.onnx.export(lin, (torch.randn(2, 4),), str(raw), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    (d / "dyn").mkdir()
    onnx.save(onnx.load(str(raw)), str(d / "dyn" / "model.onnx"))
    (d / "ext").mkdir()  # weights in model.onnx.data beside it
    onnx.save(onnx.load(str(raw)), str(d / "ext" / "model.onnx"), save_as_external_data=True,
              all_tensors_to_one_file=True, location="model.onnx.data", size_threshold=0)
    (d / "fixed").mkdir()  # batch fixed at 2
    torch.onnx.export(lin, (torch.randn(2, 4),), str(d / "fixed" / "model.onnx"), input_names=["x"], output_names=["y"],
                      dynamo=False)
    (d / "ir").mkdir()
    ov.save_model(ov.convert_model(str(d / "dyn" / "model.onnx")), str(d / "ir" / "model.xml"))
    (d / "ir_static").mkdir()
    m = ov.convert_model(str(d / "dyn" / "model.onnx"))
    m.reshape({"x": [8, 4]})
    ov.save_model(m, str(d / "ir_static" / "model.xml"))
    (d / "pt").mkdir()
    torch.jit.save(torch.jit.trace(TwoIn(), (torch.randn(2, 4), torch.ones(2, 4))), str(d / "pt" / "model.pt"))
    return d


ORT = """name: "m"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]
instance_group [ { count: 1 kind: KIND_CPU } ]
"""
OV = ORT.replace('platform: "onnxruntime_onnx"', 'backend: "openvino"') + \
    'parameters { key: "ENABLE_BATCH_PADDING" value: { string_value: "YES" } }\n'
PT = """name: "m"
platform: "pytorch_libtorch"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "mask" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "out__0" data_type: TYPE_FP32 dims: [ 4 ] }, { name: "out__1" data_type: TYPE_FP32 dims: [ 1 ] } ]
"""
AOTI = PT.replace('platform: "pytorch_libtorch"', 'platform: "torch_aoti"') + \
    'instance_group [ { count: 1 kind: KIND_CPU } ]\n'


@pytest.fixture(scope="module")
def aoti_artifacts(tmp_path_factory):
    """pt2/model.pt2: TwoIn compiled by AOTInductor (CPU kernels, batch dynamic 1..8); pt2_renamed/: the same
    archive with its model stored under another name than the one the backend loads."""
    import zipfile

    from generator.variants.torch_aoti import compiler_problem

    if why := compiler_problem():
        pytest.skip(why)
    import torch._inductor
    from torch.export import Dim

    d = tmp_path_factory.mktemp("aoti")
    (d / "pt2").mkdir()
    b = Dim("batch", min=1, max=8)
    ep = torch.export.export(TwoIn(), (torch.randn(2, 4), torch.ones(2, 4)), dynamic_shapes=({0: b}, {0: b}))
    torch._inductor.aoti_compile_and_package(ep, package_path=str(d / "pt2" / "model.pt2"))
    (d / "pt2_renamed").mkdir()
    with zipfile.ZipFile(d / "pt2" / "model.pt2") as src, \
            zipfile.ZipFile(d / "pt2_renamed" / "model.pt2", "w") as dst:
        for item in src.infolist():
            dst.writestr(item.filename.replace("/aotinductor/model/", "/aotinductor/other/"), src.read(item))
    return d


TRT_ACCEL = """optimization { execution_accelerators { gpu_execution_accelerator : [ {
  name : "tensorrt"
  parameters { key: "precision_mode" value: "FP16" } } ] } }
"""


def folder(tmp_path: Path, artifacts: Path, config: str, src: str, versions=(1,), manifest: str | None = None) -> Path:
    repo = tmp_path / "repo"
    mdir = repo / "m"
    for v in versions:
        (mdir / str(v)).mkdir(parents=True)
        for f in (artifacts / src).iterdir():
            (mdir / str(v) / f.name).write_bytes(f.read_bytes())
    (mdir / "config.pbtxt").write_text(config)
    if manifest:
        (mdir / "manifest.json").write_text(manifest)
    return repo


def findings(repo: Path) -> tuple[list[str], list[str]]:
    reports = validate_repository(repo)
    return [p for r in reports for p in r.problems], [w for r in reports for w in r.warnings]


# (rule id, config, artifact folder, expected text, extra folder kwargs)
CASES = [
    ("batch-dim", ORT, "fixed", "has a fixed first dim [2] in the graph but max_batch_size is 8", {}),
    ("openvino-batch", OV.replace("ENABLE_BATCH_PADDING", "ENABLE_BATCH_PAD"), "ir",
     "max_batch_size 8 without parameters ENABLE_BATCH_PADDING=YES", {}),
    ("io-match", ORT.replace('name: "y"', 'name: "logits"'), "dyn", "output 'logits' is not in model.onnx (it has y)", {}),
    ("io-match", OV.replace("dims: [ 3 ]", "dims: [ 5 ]"), "ir", "output 'y' dims [5] but the IR has [3]", {}),
    ("io-match", OV.replace("dims: [ 4 ]", "dims: [ -1 ]"), "ir_static",
     "input 'x' dims [-1] are dynamic where the IR is static [4]", {}),
    ("io-match", OV.replace('TYPE_FP32 dims: [ 4 ]', 'TYPE_INT64 dims: [ 4 ]'), "ir",
     "input 'x' data_type TYPE_INT64 but the IR has TYPE_FP32", {}),
    ("libtorch-io", PT.replace(', { name: "mask" data_type: TYPE_FP32 dims: [ 4 ] }', ""), "pt",
     "config declares 1 inputs but forward() takes 2 (x, mask)", {}),
    ("libtorch-io", PT.replace('name: "x"', 'name: "TMP"').replace('name: "mask"', 'name: "x"'), "pt",
     "input 'x' is forward() argument 0 but config position 1", {}),
    ("libtorch-io", PT.replace("out__1", "out__2"), "pt", "output 'out__2' refers to output index 2 but forward() returns 2", {}),
    ("libtorch-dtype", PT.replace('name: "mask" data_type: TYPE_FP32', 'name: "mask" data_type: TYPE_UINT32'), "pt",
     "input 'mask' data_type TYPE_UINT32 has no torch dtype", {}),
    ("instance-kind", OV.replace("KIND_CPU", "KIND_GPU"), "ir", "the openvino backend runs on CPU only", {}),
    ("instance-kind", ORT, "dyn", "but variant 'onnx-fp16' runs on gpu",
     {"manifest": '{"variant": "onnx-fp16", "devices": ["gpu"], "target": "triton"}'}),
    ("gpu-accelerator-kind", ORT + TRT_ACCEL, "dyn", "gpu_execution_accelerator 'tensorrt' under KIND_CPU instances only", {}),
    ("accelerators", ORT.replace("KIND_CPU", "KIND_GPU") + TRT_ACCEL.replace('"FP16"', '"FP8"'), "dyn",
     "tensorrt accelerator parameter precision_mode: 'FP8' is not one of FP32, FP16, INT8", {}),
    ("accelerators", ORT.replace("KIND_CPU", "KIND_GPU") + TRT_ACCEL.replace('"tensorrt"', '"tensorrtx"'), "dyn",
     "gpu_execution_accelerator 'tensorrtx' is unknown", {}),
    ("ort-graph-level", ORT + "optimization { graph { level: 3 } }\n", "dyn", "optimization.graph.level 3 is not one", {}),
    ("backend-parameters", OV + 'parameters { key: "num_streams" value: { string_value: "2" } }\n', "ir",
     "parameter 'num_streams' is not read by the openvino backend (names are case-sensitive; it is silently ignored); "
     "did you mean NUM_STREAMS?", {}),
    ("backend-parameters", ORT + 'parameters { key: "intra_op_threads_count" value: { string_value: "2" } }\n', "dyn",
     "did you mean intra_op_thread_count?", {}),
    ("backend-parameters", OV + 'parameters { key: "HINT_BF16" value: { string_value: "NO" } }\n', "ir",
     "parameter HINT_BF16: 'NO' is not one of YES", {}),
    ("backend-parameters", OV + 'parameters { key: "PERFORMANCE_HINT" value: { string_value: "FAST" } }\n', "ir",
     "parameter PERFORMANCE_HINT: 'FAST' is not one of LATENCY, THROUGHPUT", {}),
    ("backend-parameters", ORT + 'parameters { key: "execution_mode" value: { string_value: "2" } }\n', "dyn",
     "parameter execution_mode: '2' is not one of 0, 1", {}),
    ("backend-parameters", PT + 'parameters { key: "INFERENCE_MODE" value: { string_value: "maybe" } }\n', "pt",
     "parameter INFERENCE_MODE: 'maybe' is not a boolean", {}),
    ("model-files", ORT.replace("max_batch_size: 8", 'max_batch_size: 8\ndefault_model_filename: "model.onnx"'), "ext",
     "external data file 'model.onnx.data' is missing beside it", {"drop": "model.onnx.data"}),
    ("model-files", OV, "ir", "model.bin is missing beside it", {"drop": "model.bin"}),
    ("warmup-inputs", ORT + 'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 '
     'dims: [ 5 ] zero_data: true } } } ]\n', "dyn", "model_warmup 'w' input 'x' dims [5] do not fit the declared dims [4]", {}),
    ("warmup-inputs", PT + 'model_warmup [ { name: "w" batch_size: 1 inputs { key: "x" value: { data_type: TYPE_FP32 '
     'dims: [ 4 ] zero_data: true } } } ]\n', "pt", "model_warmup 'w' gives no value for input 'mask'", {}),
    ("version-policy", ORT + "version_policy: { specific { versions: [ 1, 2 ] } }\n", "dyn",
     "version_policy specific [1, 2] but folder 2/ does not exist", {}),
    # generator/client_rules.py (issue 19)
    ("input-format", ORT.replace("dims: [ 4 ] }", "dims: [ 4 ] format: FORMAT_NCHW }"), "dyn",
     "input 'x' format FORMAT_NCHW needs 3 dims without the batch dim, it has [4]", {}),
    ("input-format", ORT.replace("dims: [ 4 ] }", "dims: [ 4, 4, 4 ] format: FORMAT_NHWC }"), "dyn",
     "input 'x' format FORMAT_NHWC puts 4 channels at dim 2 of [4, 4, 4]", {}),
    ("label-file", ORT.replace('dims: [ 3 ] }', 'dims: [ 3 ] label_filename: "labels.txt" }'), "dyn",
     "output 'y' label_filename 'labels.txt' does not exist", {}),
    ("label-file", ORT.replace('dims: [ 3 ] }', 'dims: [ 3 ] label_filename: "../labels.txt" }'), "dyn",
     "label_filename '../labels.txt' is outside the model folder", {}),
    # torch_aoti (generator/config/rules/aoti_rules.py), on a real AOTInductor package
    ("aoti-package", AOTI, "pt2_renamed", "the package holds model(s) ['other'] but the pytorch backend loads the one "
     "named 'model'", {}),
    ("aoti-package", AOTI.replace("max_batch_size: 8", 'max_batch_size: 8\ndefault_model_filename: "model.pt"'), "pt2",
     "default_model_filename 'model.pt' is not a .pt2 AOTInductor package", {}),
    ("aoti-device", AOTI.replace("KIND_CPU", "KIND_GPU"), "pt2", "instance_group kind KIND_GPU but 1/model.pt2 has CPU "
     "kernels only", {}),
    ("aoti-io", AOTI.replace(', { name: "mask" data_type: TYPE_FP32 dims: [ 4 ] }', ""), "pt2",
     "config declares 1 inputs but the package takes 2", {}),
    ("aoti-io", AOTI.replace("out__1", "out__2"), "pt2", "output 'out__2' names index 2 but the package has 2 outputs", {}),
    ("aoti-parameters", AOTI + 'parameters { key: "ENABLE_CACHE_CLEANING" value: { string_value: "true" } }\n', "pt2",
     "parameter 'ENABLE_CACHE_CLEANING' is libtorch's name; the torch_aoti loader reads CACHE_CLEANING_ENABLED", {}),
    ("aoti-parameters", AOTI + 'parameters { key: "INTRA_OP_THREAD_COUNT" value: { string_value: "-1" } }\n', "pt2",
     "parameter INTRA_OP_THREAD_COUNT: -1 is out of range", {}),
    ("aoti-io", AOTI.replace('name: "mask" data_type: TYPE_FP32', 'name: "mask" data_type: TYPE_STRING'), "pt2",
     "input 'mask' data_type TYPE_STRING: an AOTInductor package takes torch tensors", {}),
]


@pytest.mark.parametrize("rule_id,config,src,expected,extra", CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_config_breaking_the_rule_is_caught(request, tmp_path, artifacts, rule_id, config, src, expected, extra):
    if src.startswith("pt2"):  # compiled only for the torch_aoti cases (AOTInductor needs a C++ compiler)
        artifacts = request.getfixturevalue("aoti_artifacts")
    extra = dict(extra)
    drop = extra.pop("drop", None)
    repo = folder(tmp_path, artifacts, config, src, **extra)
    if drop:
        (repo / "m" / "1" / drop).unlink()
    problems, _ = findings(repo)
    hits = [p for p in problems if expected in p]
    assert hits, problems
    assert f"[{rule_id}: " in hits[0]  # one line naming the rule and its source
    assert "\n" not in hits[0]


@pytest.mark.parametrize("config,src", [(ORT, "dyn"), (OV, "ir"), (PT, "pt"),
                                        (ORT.replace("max_batch_size: 8", 'max_batch_size: 8'), "ext"),
                                        (ORT.replace("KIND_CPU", "KIND_GPU") + TRT_ACCEL, "dyn")],
                         ids=["onnx", "openvino", "torchscript", "onnx-external-data", "trt-accelerator-on-gpu"])
def test_configs_that_keep_the_rules_pass(tmp_path, artifacts, config, src):
    problems, _ = findings(folder(tmp_path, artifacts, config, src))
    assert problems == []


def test_a_torch_aoti_config_that_keeps_the_rules_passes(tmp_path, aoti_artifacts):
    problems, _ = findings(folder(tmp_path, aoti_artifacts, AOTI, "pt2"))
    assert problems == []


def test_torchscript_inputs_not_named_after_forward_are_fed_in_order_with_a_warning(tmp_path, artifacts):
    cfg = PT.replace('name: "x"', 'name: "a"').replace('name: "mask"', 'name: "b"')
    problems, warnings = findings(folder(tmp_path, artifacts, cfg, "pt"))
    assert problems == []
    assert any("feeds them in config order [libtorch-io: " in w for w in warnings), warnings


def test_unrelated_parameters_are_metadata_with_a_warning(tmp_path, artifacts):
    cfg = ORT + 'parameters { key: "team" value: { string_value: "vision" } }\n'
    problems, warnings = findings(folder(tmp_path, artifacts, cfg, "dyn"))
    assert problems == []
    assert any("parameter 'team' is not read by the onnxruntime backend (kept as metadata" in w for w in warnings), warnings


def test_static_ir_with_reshape_io_layers_accepts_dynamic_dims(tmp_path, artifacts):
    cfg = OV + 'parameters { key: "RESHAPE_IO_LAYERS" value: { string_value: "YES" } }\n'
    problems, _ = findings(folder(tmp_path, artifacts, cfg, "ir_static"))
    assert problems == []


def test_openvino_instances_beyond_the_shared_models_streams_warn(tmp_path, artifacts):
    """openvino_backend compiles once per model: 2 instances on NUM_STREAMS 1 / INFERENCE_NUM_THREADS 1 compute one
    request at a time on one core. A warning (a legal config), none for a stream and a thread each."""
    two = OV.replace("count: 1", "count: 2")
    starved = two + 'parameters { key: "NUM_STREAMS" value: { string_value: "1" } }\n' + \
        'parameters { key: "INFERENCE_NUM_THREADS" value: { string_value: "1" } }\n'
    problems, warnings = findings(folder(tmp_path / "a", artifacts, starved, "ir"))
    hits = [w for w in warnings if "[openvino-streams: " in w]
    assert problems == [] and len(hits) == 2, warnings
    assert "only 1 stream(s) serve 2 instances" in hits[0] and "only 1 thread(s) serve 2 instances" in hits[1]
    fed = two + 'parameters { key: "NUM_STREAMS" value: { string_value: "2" } }\n' + \
        'parameters { key: "INFERENCE_NUM_THREADS" value: { string_value: "2" } }\n'
    _, warnings = findings(folder(tmp_path / "b", artifacts, fed, "ir"))
    assert not [w for w in warnings if "openvino-streams" in w], warnings


def test_every_rule_has_a_case():
    from generator.config.rules import release_rules  # noqa: F401  (registers the release-aware rules)
    from test_releases import RULE_TESTS  # their hand-broken cases live there

    assert {r.id for r in backend_rules.RULES} == {c[0] for c in CASES} | set(RULE_TESTS) | {"openvino-streams"}


def test_spec_side_parameter_check_matches_the_rule():
    assert backend_rules.check_parameter("openvino", "NUM_STREAMS", "AUTO") is None
    assert "positive integer" in backend_rules.check_parameter("openvino", "NUM_STREAMS", "0")
    assert backend_rules.check_parameter("onnxruntime", "intra_op_thread_count", "2") is None


def test_build_refuses_a_spec_that_breaks_a_backend_rule_and_writes_nothing(tmp_path):
    """The build runs the rules before the repository is swapped in: a look-alike parameter from the spec is the
    user's one-line error, and model_repository/ is not created."""
    from specs import linear_model, write_spec

    from generator.errors import UserError
    from generator.build.pipeline import build
    from generator.spec import load_spec

    spec = load_spec(write_spec(tmp_path, {"models": [linear_model(triton={"parameters": {"Intra_Op_Thread_Count": 2}})]}))
    with pytest.raises(UserError, match=r"lin__onnx/config\.pbtxt: parameter 'Intra_Op_Thread_Count' is not read by the "
                                        r"onnxruntime backend .*did you mean intra_op_thread_count\? \[backend-parameters: "):
        build(spec, tmp_path / "model_repository", tmp_path / "build")
    assert not (tmp_path / "model_repository").exists()


def test_a_broken_rule_is_blamed_on_the_settings_or_on_our_artifact():
    """A finding on config.pbtxt is the spec's settings'; one on a version folder's file is about what tritongen
    built (it was blamed on the spec's settings too), and says it may be our bug."""
    cfg = "m__onnx/config.pbtxt: parameter 'X' is not read [backend-parameters: onnxruntime_backend README]"
    art = "m__openvino/1/model.xml: the IR has no batch layout; ... [openvino-batch: openvino_backend src]"
    assert backend_rules.rule_error(["a plain problem", cfg]).endswith("(from the spec's triton settings; fix them)")
    msg = backend_rules.rule_error([art])
    assert msg.startswith(art) and "on the artifact tritongen built" in msg and "tritongen bug" in msg
    assert "spec's triton settings" not in msg
    assert backend_rules.rule_error(["no rule id here"]) is None
