"""Calibration (and verification) samples from a folder of images, preprocessed as the spec's
``preprocess.image`` says: decode with Pillow, RGB, bilinear resize, /255, normalise, layout. The same
function as the served preprocessing model (generator/loading/preprocess.py), so INT8 ranges are calibrated on
exactly what the server will feed the model."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from generator.errors import UserError
from generator.spec import ModelSpec

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def image_files(folder: Path) -> list[Path]:
    """The images of ``folder`` and of its sub-folders (one per class, for labelled verification sets), sorted by
    relative path: the sample order."""
    found = [p for p in folder.iterdir() if p.is_file()]
    found += [p for d in folder.iterdir() if d.is_dir() for p in d.iterdir() if p.is_file()]
    return sorted((p for p in found if p.suffix.lower() in IMAGE_SUFFIXES), key=lambda p: p.relative_to(folder).parts)


def image_samples(model: ModelSpec, folder: Path, where: str) -> list[dict[str, np.ndarray]]:
    """Up to ``calibration.samples`` feeds (sorted by file name), each one image with batch 1."""
    from generator.loading.preprocess import preprocess_image

    pre = model.preprocess
    if pre is None:
        raise UserError(f"{where}: '{folder.name}' is an image folder but {model.where} declares no "
                        "preprocess.image; add preprocess: {image: {size: [H, W]}} or give an .npz file")
    files = image_files(folder)
    if not files:
        raise UserError(f"{where}: folder '{folder}' holds no images ({', '.join(IMAGE_SUFFIXES)}); "
                        "add some representative images or point it at an .npz file")
    if len(model.inputs) != 1:
        others = [t.name for t in model.inputs if t.name != pre.input]
        raise UserError(f"{where}: an image folder feeds only '{pre.input}' but the model also takes "
                        f"{', '.join(others)}; give an .npz file with every input")
    batched = model.max_batch_size > 0
    out = []
    for p in files[: model.calibration.samples]:
        try:
            x = preprocess_image(p.read_bytes(), pre.size, pre.mean, pre.std, pre.layout)
        except Exception as e:
            raise UserError(f"{where}: cannot read image '{p.name}' ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:120] if str(e) else ''}); remove or replace the file")
        out.append({pre.input: x[None] if batched else x})
    return out
