"""The ``torch-aoti`` variant (generator/variants/torch_aoti.py): a real AOTInductor package built by the pipeline,
its config (``platform: "torch_aoti"``, parsed with Triton's schema), the manifest's compile record, the
release-aware validate check, a machine without a C++ compiler, and the twin serving the package through a real
embedded tritonserver with answers compared with PyTorch."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

from generator.build.pipeline import build
from generator.spec import load_spec
from generator.config.validate import parse_config, validate_repository
from generator.variants.torch_aoti import compiler_problem, dynamic_shapes
from specs import cnn_model, text_model, write_spec

pytestmark = pytest.mark.slow


def _cnn_ref(x: np.ndarray) -> np.ndarray:
    from examples.cnn import small_cnn

    with torch.inference_mode():
        return small_cnn(width=8)(torch.from_numpy(x)).numpy()


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny CNN's torch-aoti variant for the triton target and, from the same build cache, the embedded one."""
    if why := compiler_problem():
        pytest.skip(why)
    work = tmp_path_factory.mktemp("aoti")
    spec = load_spec(write_spec(work, {"models": [cnn_model(variants=["torch-aoti"],
                                                            triton={"instance_group": [{"count": 1, "kind": "KIND_CPU"}]})]}))
    triton = build(spec, work / "triton", work / "build")
    embedded = build(spec, work / "embedded", work / "build", target="embedded")
    return work, triton.results[0], embedded.results[0]


def test_the_package_is_a_torch_aoti_model_verified_at_every_point(built):
    work, r, _ = built
    assert r.status == "built", r.reason
    mdir = work / "triton" / "cnn__torch-aoti"
    cfg, problem = parse_config((mdir / "config.pbtxt").read_text(), "config.pbtxt")
    assert problem is None
    assert cfg.platform == "torch_aoti" and cfg.max_batch_size == 4
    from tritonclient.grpc import model_config_pb2 as pb

    assert [pb.ModelInstanceGroup.Kind.Name(g.kind) for g in cfg.instance_group] == ["KIND_CPU"]  # CPU kernels
    assert (mdir / "1" / "model.pt2").is_file()
    man = json.loads((mdir / "manifest.json").read_text())
    assert man["gate"] == "passed"
    points = {c["point"] for c in r.verification["checks"]}
    assert {"batch=1", "batch=4"} <= points, points
    assert man["info"]["compile_s"] > 0 and man["info"]["inductor_configs"] == {"max_autotune": False}
    assert man["info"]["cpu_isa"]  # the vector ISA the kernels were compiled for
    assert validate_repository(work / "triton")[0].problems == []
    assert "aoti_compile_and_package" in (work / "build" / "cnn" / "torch-aoti" / "reproduce.sh").read_text()


def test_a_release_without_the_pt2_loader_is_a_one_line_problem(built):
    work, _, _ = built
    old = validate_repository(work / "triton", triton_release="24.10")[0].problems
    assert any("platform torch_aoti needs tritonserver" in p and "[aoti-release: " in p for p in old), old
    assert all("\n" not in p for p in old)
    # a release with the pt2 loader has no such problem (releases past the table's newest are not validated)
    from generator.config.rules.aoti_rules import MIN_RELEASE, release_problem

    assert release_problem(MIN_RELEASE) is None and release_problem("26.01") is None


def test_the_package_answers_like_pytorch_at_batches_it_was_not_traced_at(built):
    work, _, _ = built
    from generator.serve.runtimes import open_session

    s = open_session("aoti", work / "triton" / "cnn__torch-aoti" / "1" / "model.pt2", ["images"], ["logits"], {})
    for n in (1, 3, 4):
        x = np.random.default_rng(n).standard_normal((n, 3, 16, 16)).astype(np.float32)
        np.testing.assert_allclose(s([x])[0], _cnn_ref(x), atol=1e-4, rtol=1e-3)


def test_dims_follow_the_spec():
    spec_model = load_spec(write_spec_tmp(text_model(variants=["torch-aoti"]))).models[0]
    shapes = dynamic_shapes(spec_model)
    assert len(shapes) == 2
    batch, seq = shapes[0][0], shapes[0][1]
    assert (batch.min, batch.max) == (1, 4) and (seq.min, seq.max) == (1, 16)
    assert shapes[1][1] is seq


def write_spec_tmp(model: dict):
    import tempfile
    from pathlib import Path

    return write_spec(Path(tempfile.mkdtemp(prefix="aoti-spec-")), {"models": [model]})


def test_without_a_cxx_compiler_the_variant_is_skipped_with_one_line_before_anything_is_built(tmp_path, monkeypatch):
    # Not a mock: PATH really holds no compiler (an empty folder) and CXX is unset, so inductor's own lookup
    # ($CXX, else g++) would fail the same way.
    empty = tmp_path / "bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.delenv("CXX", raising=False)
    assert "no C++ compiler" in compiler_problem()
    spec = load_spec(write_spec(tmp_path, {"models": [cnn_model(variants=["torch-aoti"])]}))
    r = build(spec, tmp_path / "model_repository", tmp_path / "build").results[0]
    assert r.status == "skipped"
    assert "no C++ compiler" in r.reason and "g++" in r.reason and "\n" not in r.reason
    assert not list((tmp_path / "build").rglob("model.pt2"))
    assert not (tmp_path / "model_repository" / "cnn__torch-aoti").exists()


@pytest.mark.server
def test_the_twin_serves_the_package_and_answers_like_pytorch(built, triton_server_factory):
    work, _, r = built
    assert r.status in ("built", "cached"), r.reason  # the artifact comes from the triton build's cache
    mdir = work / "embedded" / "cnn__torch-aoti"
    cfg, _ = parse_config((mdir / "config.pbtxt").read_text(), "config.pbtxt")
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    assert cfg.backend == "python" and params["runtime"] == "aoti" and params["artifact"] == "model.pt2"
    server = triton_server_factory(work / "embedded")
    import tritonclient.http as http

    client = http.InferenceServerClient(server.urls.http)
    assert client.is_model_ready("cnn__torch-aoti")
    for n in (1, 4):
        x = np.random.default_rng(10 + n).standard_normal((n, 3, 16, 16)).astype(np.float32)
        inp = http.InferInput("images", list(x.shape), "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("cnn__torch-aoti", [inp]).as_numpy("logits")
        np.testing.assert_allclose(got, _cnn_ref(x), atol=1e-4, rtol=1e-3)
    assert os.path.getsize(mdir / "1" / "model.pt2") > 0


def test_a_dim_the_model_cannot_take_everywhere_is_named_with_its_guard(tmp_path):
    """torch.export's "Constraints violated" (forward() needs seq != 2 over a declared [2, 8]) is the variant's one
    line: the dim, its range, the guard in the dim's name, what to change; other variants are unaffected."""
    from generator.variants.torch_aoti import constraint_violation

    spec = load_spec(write_spec(tmp_path, {"models": [{
        "name": "sq", "source": {"factory": "tinymodels.named_io:squeezes_tail"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": ["seq"]}], "dims": {"seq": [2, 4, 8]},
        "outputs": [{"name": "y", "dtype": "float32", "shape": [1]}], "max_batch_size": 2,
        "variants": ["torch-aoti"]}]}))
    report = build(spec, tmp_path / "repo", tmp_path / "build")
    r = report.results[0]
    if r.status == "skipped":
        pytest.skip(r.reason)
    assert r.status == "failed" and r.reason.startswith("torch-aoti: torch.export cannot keep seq dynamic over its range"), r.reason
    assert "forward() needs" in r.reason and "seq" in r.reason.split("needs", 1)[1] and "narrow dims.seq" in r.reason
    assert constraint_violation("some other export error") == ""
