"""Image input formats and class labels: what Triton's clients read from a config to use a model.

- ``format: FORMAT_NCHW | FORMAT_NHWC`` on an image input: Triton's example ``image_client.py`` lays out the
  image from it (and refuses ``FORMAT_NONE``). Triton core requires exactly 3 non-batch dims where it is set
  (``ValidateModelInput``: "model input NHWC/NCHW require 3 dims").
- ``labels:`` on a classification output (a list, or a text file with one label a line): written beside
  config.pbtxt and named by the output's ``label_filename``. Triton answers a request that asks for
  ``class_count`` on that output with ``score:index:label`` strings itself (the HTTP/gRPC frontends'
  ``TopkClassifications`` with labels from core's label provider, model-directory relative), so the files
  are all a model -- the python-backend twin and the ensemble included -- needs.

Plain functions over raw spec values; no import from ``generator.spec``.
"""

from __future__ import annotations

from pathlib import Path

from generator.errors import UserError

FORMATS = ("FORMAT_NCHW", "FORMAT_NHWC")
LABEL_FILE = "labels.txt"


def parse_format(value, where: str, shape: tuple) -> str | None:
    """``inputs[i].format`` -> FORMAT_NCHW | FORMAT_NHWC (None when absent); 3 dims, channels 1 or 3 where fixed."""
    if value is None:
        return None
    if value not in FORMATS:
        raise UserError(f"{where}: '{value}' is not one of {', '.join(FORMATS)}")
    if len(shape) != 3:
        raise UserError(f"{where}: {value} needs 3 dims without the batch dim ([C, H, W] or [H, W, C]), "
                        f"the shape has {len(shape)}; fix the shape or remove format")
    channels = shape[0] if value == "FORMAT_NCHW" else shape[2]
    if isinstance(channels, int) and channels not in (1, 3):
        raise UserError(f"{where}: {value} puts the channels at dim {0 if value == 'FORMAT_NCHW' else 2}, which is "
                        f"{channels} (not 1 or 3); use the other format or fix the shape")
    return value


def parse_labels(value, where: str, shape: tuple, root: Path | None) -> tuple[str, ...] | None:
    """``outputs[i].labels``: a list of strings or a file (one label a line, relative to the spec) -> the labels.

    A classification output has as many labels as classes (its last dim, when that is fixed)."""
    if value is None:
        return None
    if isinstance(value, str):
        path = Path(value).expanduser()
        if not path.is_absolute() and root is not None:
            path = root / path
        if not path.is_file():
            what = "is a folder" if path.is_dir() else "not found"
            raise UserError(f"{where}: file '{value}' {what}; give a text file with one label a line, or a list")
        try:
            text = path.read_bytes().decode("utf-8")
        except UnicodeDecodeError as e:
            raise UserError(f"{where}: file '{value}' is not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset "
                            f"{e.start}); save the labels as UTF-8, one a line") from None
        labels = tuple(line.rstrip("\r") for line in text.split("\n"))
        while labels and labels[-1] == "":
            labels = labels[:-1]
    elif isinstance(value, list) and all(isinstance(v, (str, int)) and not isinstance(v, bool) for v in value):
        labels = tuple(str(v) for v in value)
    else:
        raise UserError(f"{where}: expected a list of labels or a file with one label a line")
    if not labels:
        raise UserError(f"{where}: no labels; give one per class")
    bad = next((lb for lb in labels if "\n" in lb), None)
    if bad is not None:
        raise UserError(f"{where}: label {bad!r} spans lines; one label a line")
    if not shape:
        raise UserError(f"{where}: labels need an output with a class dim; remove labels from this scalar output")
    classes = shape[-1]
    if isinstance(classes, int) and classes > 0 and len(labels) != classes:
        raise UserError(f"{where}: {len(labels)} labels for {classes} classes (the output's last dim); give one per class")
    return labels


def hf_labels(cfg: dict) -> list[str] | None:
    """Labels from a Hugging Face config.json ``id2label`` (keys "0".."n-1"), else None."""
    id2label = cfg.get("id2label")
    if not isinstance(id2label, dict) or not id2label:
        return None
    try:
        by_index = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError):
        return None
    if sorted(by_index) != list(range(len(by_index))):
        return None
    return [by_index[i] for i in range(len(by_index))]


def label_files(outputs) -> dict[str, str]:
    """{output name: label file name} for the outputs with labels: ``labels.txt`` for one, else one file per output."""
    named = [t.name for t in outputs if getattr(t, "labels", None)]
    if len(named) == 1:
        return {named[0]: LABEL_FILE}
    return {n: f"labels_{n.replace('/', '_').replace(':', '_')}.txt" for n in named}


def write_label_files(model_dir: Path, outputs) -> list[Path]:
    """The label files of ``outputs`` beside ``model_dir/config.pbtxt`` (one label a line)."""
    files = label_files(outputs)
    written = []
    for t in outputs:
        if t.name in files:
            path = Path(model_dir) / files[t.name]
            path.write_text("\n".join(t.labels) + "\n", encoding="utf-8")
            written.append(path)
    return written
