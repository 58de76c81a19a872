"""`tritongen validate` on hand-written and hand-broken repositories: Triton's own schema first
(model_config_pb2), then semantics the schema cannot see, each as a precise one-line problem."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from generator.errors import UserError
from generator.config.validate import validate_repository

GOOD = """name: "lin"
platform: "onnxruntime_onnx"
max_batch_size: 8
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]
dynamic_batching { preferred_batch_size: [ 2, 8 ] }
"""


@pytest.fixture(scope="module")
def lin_onnx(tmp_path_factory):
    """A real ONNX file (dynamic batch) exported from torch: the artifact configs are checked against."""
    import onnx

    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3).eval()
    raw = d / "raw.onnx"
    torch.onnx.export(m, (torch.randn(2, 4),), str(raw), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    out = d / "model.onnx"
    onnx.save(onnx.load(str(raw)), str(out))
    return out


def repo_with(tmp_path: Path, lin_onnx: Path, config: str, name: str = "lin", artifact: bool = True) -> Path:
    repo = tmp_path / "repo"
    (repo / name / "1").mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    if artifact:
        (repo / name / "1" / "model.onnx").write_bytes(lin_onnx.read_bytes())
    return repo


def problems(repo):
    return [p for r in validate_repository(repo) for p in r.problems]


def test_hand_written_valid_repository_passes(tmp_path, lin_onnx):
    assert problems(repo_with(tmp_path, lin_onnx, GOOD)) == []


CASES = [
    (GOOD.replace("max_batch_size: 8", "max_batch_sise: 8"), "lin/config.pbtxt:3:1:"),
    (GOOD.replace("TYPE_FP32 dims: [ 4 ]", "TYPE_FP33 dims: [ 4 ]"), "lin/config.pbtxt:4:"),
    (GOOD.replace("[ 2, 8 ]", "[ 2, 16 ]"), "dynamic_batching.preferred_batch_size 16 > max_batch_size 8"),
    (GOOD.replace("max_batch_size: 8\n", ""), "max_batch_size is not written"),
    (GOOD.replace("dims: [ 4 ]", "dims: [ 5 ]"), "input 'x' dims [5] but the graph has [4]"),
    (GOOD.replace('name: "x" data_type: TYPE_FP32', 'name: "x" data_type: TYPE_INT64'),
     "input 'x' data_type TYPE_INT64 but the graph has TYPE_FP32"),
    (GOOD.replace('name: "y"', 'name: "out"'), "output 'out' is not in model.onnx (it has y)"),
    (GOOD.replace('name: "lin"', 'name: "other"'), "name \"other\" differs from its folder 'lin'"),
    (GOOD.replace('platform: "onnxruntime_onnx"\n', ""), "neither platform nor backend is set"),
    (GOOD.replace("dims: [ 4 ]", "dims: [ 4, 1 ]"), "dims [4, 1] but the graph has rank 1"),
    (GOOD + 'model_warmup [ { name: "w" batch_size: 32 inputs { key: "x" value: { data_type: TYPE_FP32 dims: [ 4 ] zero_data: true } } } ]',
     "model_warmup 'w' batch_size 32 > max_batch_size 8"),
    # Triton's platforms are a closed set; a backend one slip from a shipped one is a typo, not a custom backend
    (GOOD.replace('platform: "onnxruntime_onnx"', 'platform: "onnx_runtime"'),
     "platform \"onnx_runtime\" is not one Triton knows (did you mean 'onnxruntime_onnx'?"),
    (GOOD.replace('platform: "onnxruntime_onnx"', 'backend: "onnx"'),
     "backend \"onnx\" is not a backend Triton ships; did you mean \"onnxruntime\"?"),
    (GOOD.replace('platform: "onnxruntime_onnx"', 'backend: "pyton"'), "did you mean \"python\"?"),
]


def test_a_custom_backend_name_is_not_a_problem(tmp_path, lin_onnx):
    found = problems(repo_with(tmp_path, lin_onnx, GOOD.replace('platform: "onnxruntime_onnx"',
                                                                'backend: "mycompany_engine"')))
    assert not any("backend" in p for p in found), found


@pytest.mark.parametrize("config,message", CASES, ids=[c[1][:40] for c in CASES])
def test_hand_broken_config_gives_precise_message(tmp_path, lin_onnx, config, message):
    found = problems(repo_with(tmp_path, lin_onnx, config))
    assert any(message in p for p in found), found


def test_missing_model_file(tmp_path, lin_onnx):
    found = problems(repo_with(tmp_path, lin_onnx, GOOD, artifact=False))
    assert found == ["lin/1: model.onnx is missing; the onnxruntime_onnx backend loads that file"]


def test_fixed_batch_graph_with_batching_config(tmp_path):
    raw = tmp_path / "fixed.onnx"
    torch.onnx.export(torch.nn.Linear(4, 3), (torch.randn(2, 4),), str(raw), input_names=["x"], output_names=["y"],
                      dynamo=False)
    found = problems(repo_with(tmp_path, raw, GOOD))
    assert any("has a fixed first dim [2] in the graph but max_batch_size is 8" in p for p in found), found


def test_ensemble_wiring_is_checked(tmp_path, lin_onnx):
    repo = repo_with(tmp_path, lin_onnx, GOOD)
    (repo / "ens" / "1").mkdir(parents=True)
    (repo / "ens" / "config.pbtxt").write_text("""name: "ens"
platform: "ensemble"
max_batch_size: 8
input [ { name: "IN" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "OUT" data_type: TYPE_FP32 dims: [ 3 ] } ]
ensemble_scheduling { step [
  { model_name: "lin" model_version: -1 input_map { key: "x" value: "IN" } output_map { key: "why" value: "OUT" } },
  { model_name: "ghost" model_version: -1 input_map { key: "a" value: "NOPE" } output_map { key: "b" value: "C" } }
] }
""")
    found = problems(repo)
    assert any("output_map key 'why' is not an output of 'lin'" in p for p in found), found
    assert any("step 1 names model 'ghost', which is not in the repository" in p for p in found), found


def test_not_a_folder(tmp_path):
    with pytest.raises(UserError, match="not a folder"):
        validate_repository(tmp_path / "nope")


def test_cli_exit_codes(tmp_path, lin_onnx):
    repo = repo_with(tmp_path, lin_onnx, GOOD)
    ok = subprocess.run([sys.executable, "-m", "generator.cli", "validate", str(repo)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    (repo / "lin" / "config.pbtxt").write_text(GOOD.replace("[ 2, 8 ]", "[ 2, 16 ]"))
    bad = subprocess.run([sys.executable, "-m", "generator.cli", "validate", str(repo)], capture_output=True, text=True)
    assert bad.returncode == 1
    assert "error: lin/config.pbtxt: dynamic_batching.preferred_batch_size 16 > max_batch_size 8" in bad.stderr
    assert "Traceback" not in bad.stderr
