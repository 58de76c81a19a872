"""generator.loading.preprocess.preprocess_image: equal to a PyTorch reference and to the served template's copy."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.loading.preprocess import preprocess_image

ROOT = Path(__file__).resolve().parent.parent


def _png(w: int, h: int, seed: int) -> bytes:
    from PIL import Image

    img = Image.fromarray(np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8), "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def test_template_and_module_share_one_function():
    def function_ast(path: Path) -> str:
        tree = ast.parse(path.read_text())
        fn = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "preprocess_image")
        return ast.dump(fn)

    assert function_ast(ROOT / "templates" / "preprocess" / "model.py") == function_ast(
        ROOT / "generator" / "loading" / "preprocess.py"
    )


def test_matches_a_torch_reference_and_layouts_agree():
    from PIL import Image

    data = _png(50, 40, 9)
    img = Image.open(io.BytesIO(data)).convert("RGB").resize((32, 24), Image.BILINEAR)
    t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1).float() / 255.0
    mean = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)
    want = ((t - mean) / std).numpy()
    got = preprocess_image(data, (24, 32))
    assert got.shape == (3, 24, 32) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    nhwc = preprocess_image(data, (24, 32), layout="NHWC")
    np.testing.assert_array_equal(nhwc, got.transpose(1, 2, 0))


def test_trailing_zero_padding_is_ignored():
    data = _png(20, 10, 3)
    np.testing.assert_array_equal(preprocess_image(data + bytes(100), (8, 8)), preprocess_image(data, (8, 8)))


def test_one_mean_value_means_grayscale():
    """mean/std of one value: Pillow's L conversion, one channel first (NCHW) or last (NHWC)."""
    from PIL import Image

    data = _png(30, 20, 5)
    img = Image.open(io.BytesIO(data)).convert("L").resize((16, 12), Image.BILINEAR)
    want = ((np.asarray(img, dtype=np.float32) / 255.0 - 0.1307) / 0.3081)[None]
    got = preprocess_image(data, (12, 16), mean=(0.1307,), std=(0.3081,))
    assert got.shape == (1, 12, 16) and got.dtype == np.float32
    np.testing.assert_allclose(got, want, atol=1e-6)
    assert preprocess_image(data, (12, 16), mean=(0.5,), std=(0.5,), layout="NHWC").shape == (12, 16, 1)


@pytest.mark.server
def test_a_grayscale_model_is_served_from_color_image_bytes(tmp_path, triton_server_factory):
    """An MNIST-like model behind the image ensemble: a colour PNG in, logits out, equal to PyTorch's on the same
    preprocessing; the spec refuses an RGB mean for a one-channel input, naming both."""
    import tritonclient.grpc as grpcclient
    from specs import write_spec

    from generator.build.pipeline import build
    from generator.errors import UserError
    from generator.spec import load_spec
    from tinymodels.tiny import gray_cnn

    model = {"name": "mnist", "source": {"factory": "tinymodels.tiny:gray_cnn"},
             "inputs": [{"name": "x", "dtype": "float32", "shape": [1, 28, 28]}],
             "outputs": [{"name": "logits", "dtype": "float32", "shape": [10]}], "max_batch_size": 4,
             "variants": ["onnx"], "preprocess": {"image": {"size": [28, 28], "mean": [0.1307], "std": [0.3081]}}}
    spec = load_spec(write_spec(tmp_path, {"models": [model]}))
    build(spec, tmp_path / "repo", tmp_path / "build", target="embedded")
    server = triton_server_factory(tmp_path / "repo")
    data = _png(40, 30, 11)
    inp = grpcclient.InferInput("image", [1, 1], "BYTES")
    inp.set_data_from_numpy(np.array([[data]], dtype=np.object_))
    got = grpcclient.InferenceServerClient(server.urls.grpc).infer("mnist__ensemble", [inp]).as_numpy("logits")
    x = preprocess_image(data, (28, 28), mean=(0.1307,), std=(0.3081,))
    with torch.no_grad():
        want = gray_cnn()(torch.from_numpy(x)[None]).numpy()
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=1e-4)
    with pytest.raises(UserError) as e:
        load_spec(write_spec(tmp_path, {"models": [{**model, "preprocess": {"image": {"size": [28, 28]}}}]}))
    assert "input 'x' is [1, 28, 28] float32 but NCHW preprocessing to [28, 28] makes [3, 28, 28] float32 (RGB: 3 " \
        "mean/std values); make them agree" in str(e.value), str(e.value)
