"""Real inputs for the endpoint production calls: an image folder or a sentences file -> ensemble requests.

``tritongen perf --images DIR`` / ``--sentences FILE`` measure ``<model>__ensemble`` (preprocessing or
tokenisation + the model) with the files users send: one encoded image (or one UTF-8 sentence) per BYTES
element, ``[batch, 1]`` like Triton's ensemble_image_client, or zero-padded uint8 rows where the ensemble
declares ``preprocess.image.dtype: uint8``. The same samples feed the built-in load generator (numpy feeds)
and perf_analyzer (``--input-data`` JSON: one entry per sample without the batch dim; a BYTES tensor's ``b64``
is Triton's serialized string tensor, each element a 4-byte little-endian length and its bytes -- perf_analyzer
2.51 answers "incomplete string data ... expecting string of length N" when the length is missing).
"""

from __future__ import annotations

import base64
import json
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.errors import UserError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


@dataclass(frozen=True)
class RealInputs:
    images: Path | None = None  # a folder of encoded images (for image ensembles)
    sentences: Path | None = None  # a text file, one sentence a line (for text ensembles)

    def __bool__(self) -> bool:
        return self.images is not None or self.sentences is not None


def read_images(folder: Path, where: str = "--images") -> list[bytes]:
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"{where} {folder}: not a folder; give a folder of JPEG/PNG files")
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise UserError(f"{where} {folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return [p.read_bytes() for p in files]


def read_sentences(path: Path, where: str = "--sentences") -> list[bytes]:
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{where} {path}: not a file; give a text file with one sentence a line")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"{where} {path}: no sentences (one a line)")
    return [ln.encode("utf-8") for ln in lines]


def ensemble_feeds(input_name: str, datatype: str, elements: list[bytes], n: int = 4, batch: int = 1) -> list[dict]:
    """``n`` request feeds of ``batch`` elements each, cycling through ``elements``."""
    feeds = []
    k = 0
    for _ in range(n):
        chosen = [elements[(k + j) % len(elements)] for j in range(batch)]
        k += batch
        if datatype == "UINT8":
            width = max(len(b) for b in chosen)
            arr = np.zeros((batch, width), dtype=np.uint8)
            for i, b in enumerate(chosen):
                arr[i, : len(b)] = np.frombuffer(b, dtype=np.uint8)
        else:
            arr = np.empty((batch, 1), dtype=object)
            for i, b in enumerate(chosen):
                arr[i, 0] = b
        feeds.append({input_name: arr})
    return feeds


def _ensemble_input(model_dir: Path) -> tuple[str, str]:
    """(name, KServe datatype) of an ensemble's first input, from its config.pbtxt."""
    from generator.config.validate import parse_config
    from tritonclient.grpc import model_config_pb2 as pb

    cfg, problem = parse_config((model_dir / "config.pbtxt").read_text(), f"{model_dir.name}/config.pbtxt")
    if problem:
        raise UserError(problem)
    first = cfg.input[0]
    return first.name, {"TYPE_STRING": "BYTES", "TYPE_UINT8": "UINT8"}.get(pb.DataType.Name(first.data_type), "BYTES")


def feeds_for(model_dir: Path, real: RealInputs | None, n: int = 4, batch: int = 1) -> list[dict] | None:
    """Request feeds of real files for an ensemble folder (image or text by its input), else None."""
    if not real:
        return None
    name, datatype = _ensemble_input(Path(model_dir))
    if name == "image" and real.images is not None:
        return ensemble_feeds(name, datatype, read_images(real.images), n, batch)
    if name == "text" and real.sentences is not None:
        return ensemble_feeds(name, datatype, read_sentences(real.sentences), n, batch)
    return None


def wants(variant: str, model_dir: Path, real: RealInputs | None) -> bool:
    """Whether ``tritongen perf`` measures this folder: an ensemble whose input the real files fit."""
    if variant != "ensemble" or not real:
        return False
    name, _ = _ensemble_input(Path(model_dir))
    return (name == "image" and real.images is not None) or (name == "text" and real.sentences is not None)


def write_input_data(feeds: list[dict], path: Path, batched: bool = True) -> Path:
    """perf_analyzer ``--input-data`` JSON for these feeds: one entry per sample (without the batch dim when
    ``batched``); BYTES tensors serialized as Triton does (length-prefixed elements), numeric ones as raw
    bytes, both base64 + shape."""
    data = []
    for f in feeds:
        rows = max(len(v) for v in f.values()) if batched else 1
        for i in range(rows):
            entry = {}
            for name, arr in f.items():
                a = arr[i] if batched else arr
                if a.dtype == object:
                    flat = a.reshape(-1)
                    raw = b"".join(struct.pack("<I", len(bytes(v))) + bytes(v) for v in flat)
                    entry[name] = {"b64": base64.b64encode(raw).decode(), "shape": list(a.shape)}
                else:
                    a = np.ascontiguousarray(a)
                    entry[name] = {"b64": base64.b64encode(a.tobytes()).decode(), "shape": list(a.shape)}
            data.append(entry)
    Path(path).write_text(json.dumps({"data": data}))
    return Path(path)


# ------------------------------------------------------------- the variants themselves (tritongen tune)

_ACTIVE: list[RealInputs] = []  # set by ``tritongen tune --images/--sentences`` for the run (``active``)


class active:
    """``with active(real): run_tune(...)``: the tuner's measurements feed the variants the real files,
    preprocessed as the served helper model does (``variant_feeds``), instead of random tensors."""

    def __init__(self, real: RealInputs | None):
        self.real = real

    def __enter__(self):
        _ACTIVE.append(self.real or RealInputs())
        return self.real

    def __exit__(self, *exc):
        _ACTIVE.pop()


def variant_feeds(model, real: RealInputs | None = None, n: int = 4) -> list[dict] | None:
    """Batch-1 feeds for a variant model from the real files: images through ``preprocess.image`` (decode,
    resize, normalise: generator.loading.preprocess, the served model's own function), sentences through the
    served tokenizer (generator.loading.hf.text_samples). None when the model has no matching preprocessing."""
    real = real if real is not None else (_ACTIVE[-1] if _ACTIVE else None)
    pre = getattr(model, "preprocess", None)
    if not real or pre is None:
        return None
    if hasattr(pre, "size") and real.images is not None:
        from generator.loading.preprocess import preprocess_image

        images = read_images(real.images)[:n]
        batched = model.max_batch_size > 0
        feeds = []
        for data in images:
            x = preprocess_image(data, pre.size, pre.mean, pre.std, pre.layout)
            feed = {pre.input: x[None] if batched else x}
            if len(model.inputs) > 1:  # other inputs: the spec's own samples
                from generator.loading.inputs import make_inputs

                from .loadgen import spec_point

                extra = make_inputs(model, spec_point(model, 1), seed=0)
                feed = {**extra, **feed}
            feeds.append(feed)
        from .loadgen import api_feeds

        return api_feeds(model, feeds)
    if hasattr(pre, "tokenizer") and real.sentences is not None:
        from generator.loading.hf import text_samples

        return text_samples(model, Path(real.sentences), "--sentences")[:n] or None
    return None
