"""Image preprocessing, the same as the served ``templates/preprocess/model.py`` does.

``preprocess_image`` below and ``_preprocess`` in the template are kept identical (a test compares their
source), so a test can run PyTorch on exactly what the server feeds the model.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def preprocess_image(
    data: bytes,
    size: Sequence[int] = (224, 224),
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    layout: str = "NCHW",
    resize: str = "bilinear",
) -> np.ndarray:
    """Encoded image bytes (JPEG/PNG/...) -> float32 (C, H, W) for NCHW or (H, W, C) for NHWC, C = len(mean):
    3 (RGB) or 1 (grayscale, Pillow's "L").

    Decode with Pillow, convert to RGB (or L), resize to ``size`` = (height, width) with ``resize``
    (bilinear | nearest | bicubic), scale to [0, 1], subtract ``mean`` and divide by ``std`` per channel.
    Trailing bytes after the image (zero padding in a batch) are ignored by the decoders.
    """
    from PIL import Image

    modes = {"bilinear": Image.BILINEAR, "nearest": Image.NEAREST, "bicubic": Image.BICUBIC}
    with Image.open(io.BytesIO(bytes(data))) as img:
        rgb = img.convert("L" if len(mean) == 1 else "RGB").resize((int(size[1]), int(size[0])), modes[resize])
    x = np.asarray(rgb, dtype=np.float32).reshape(int(size[0]), int(size[1]), -1) / np.float32(255.0)
    x = (x - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    if layout.upper() == "NCHW":
        x = x.transpose(2, 0, 1)
    return np.ascontiguousarray(x, dtype=np.float32)
