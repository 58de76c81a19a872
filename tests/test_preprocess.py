"""generator.loading.preprocess.preprocess_image: equal to a PyTorch reference and to the served template's copy."""

from __future__ import annotations

import ast
import io
from pathlib import Path

import numpy as np
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
