"""perf/inputs.py: real files (an image folder, a sentences file) as ensemble requests for the load generator
and perf_analyzer, and as preprocessed variant inputs for the tuner."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

import numpy as np
import pytest

from generator.errors import UserError
from generator.loading.preprocess import preprocess_image
from generator.spec import parse_spec
from perf import inputs
from specs import vit_model


def _images(folder: Path) -> list[bytes]:
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (size, fmt) in enumerate((((40, 30), "PNG"), ((17, 64), "JPEG"), ((32, 32), "PNG"))):
        arr = np.random.default_rng(i).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format=fmt)
        (folder / f"img{i}.{fmt.lower()}").write_bytes(buf.getvalue())
        out.append(buf.getvalue())
    (folder / "notes.txt").write_text("not an image")  # ignored by suffix
    return out


def _ensemble_dir(tmp: Path, data_type: str = "TYPE_STRING", dims: str = "1") -> Path:
    d = tmp / "vit__ensemble"
    d.mkdir(parents=True, exist_ok=True)
    (d / "config.pbtxt").write_text(f'name: "vit__ensemble"\nplatform: "ensemble"\nmax_batch_size: 4\n'
                                    f'input [ {{ name: "image" data_type: {data_type} dims: [ {dims} ] }} ]\n'
                                    'output [ { name: "logits" data_type: TYPE_FP32 dims: [ 10 ] } ]\n')
    return d


def test_image_folder_becomes_one_bytes_element_per_image(tmp_path):
    files = _images(tmp_path / "imgs")
    real = inputs.RealInputs(images=tmp_path / "imgs")
    feeds = inputs.feeds_for(_ensemble_dir(tmp_path), real, n=2, batch=2)
    assert [f["image"].shape for f in feeds] == [(2, 1), (2, 1)]
    assert [bytes(v) for f in feeds for v in f["image"].reshape(-1)] == [files[0], files[1], files[2], files[0]]
    assert inputs.wants("ensemble", tmp_path / "vit__ensemble", real)
    assert not inputs.wants("onnx", tmp_path / "vit__ensemble", real)
    assert not inputs.wants("ensemble", tmp_path / "vit__ensemble", inputs.RealInputs(sentences=tmp_path / "s.txt"))


def test_uint8_ensembles_get_zero_padded_rows(tmp_path):
    files = _images(tmp_path / "imgs")
    feeds = inputs.feeds_for(_ensemble_dir(tmp_path, "TYPE_UINT8", "-1"), inputs.RealInputs(images=tmp_path / "imgs"),
                             n=1, batch=2)
    arr = feeds[0]["image"]
    assert arr.dtype == np.uint8 and arr.shape == (2, max(len(files[0]), len(files[1])))
    assert arr[0, : len(files[0])].tobytes() == files[0]


def test_perf_analyzer_input_data_holds_each_file_once_per_sample(tmp_path):
    files = _images(tmp_path / "imgs")
    feeds = inputs.ensemble_feeds("image", "BYTES", files, n=1, batch=3)
    doc = json.loads(inputs.write_input_data(feeds, tmp_path / "d.json").read_text())
    # Triton's serialized string tensor: a 4-byte little-endian length, then the bytes
    assert [base64.b64decode(e["image"]["b64"]) for e in doc["data"]] == [len(f).to_bytes(4, "little") + f for f in files]
    assert all(e["image"]["shape"] == [1] for e in doc["data"])


def test_sentences_and_missing_files(tmp_path):
    (tmp_path / "s.txt").write_text("a cat\n\n  a dog  \n")
    assert inputs.read_sentences(tmp_path / "s.txt") == [b"a cat", b"a dog"]
    with pytest.raises(UserError, match=r"--images .*nowhere: not a folder"):
        inputs.read_images(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"--images .*empty: no image files"):
        inputs.read_images(tmp_path / "empty")


def test_tuner_feeds_are_the_images_preprocessed_like_the_server(tmp_path):
    files = _images(tmp_path / "imgs")
    model = parse_spec({"models": [vit_model(preprocess={"image": {"size": [32, 32]}})]}, tmp_path / "s.yaml").models[0]
    real = inputs.RealInputs(images=tmp_path / "imgs")
    assert inputs.variant_feeds(model) is None  # nothing active
    with inputs.active(real):
        feeds = inputs.variant_feeds(model, n=2)
    assert len(feeds) == 2 and feeds[0]["pixel_values"].shape == (1, 3, 32, 32)
    np.testing.assert_array_equal(feeds[1]["pixel_values"][0], preprocess_image(files[1], size=(32, 32)))
    plain = parse_spec({"models": [vit_model()]}, tmp_path / "s.yaml").models[0]
    assert inputs.variant_feeds(plain, real) is None  # no preprocessing: the spec's own samples
