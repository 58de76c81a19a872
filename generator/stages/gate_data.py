"""The verification set of the task gate (issue 21): whole preprocessed inputs, their labels, and never the
calibration samples unless the spec says so.

Where the samples come from, in order:
- ``verify.data`` (an .npz, an image folder, sentences.txt: read exactly as calibration data is, through the
  spec's preprocessing or tokenizer). Samples that are also calibration samples (same bytes) are left out and
  counted (``overlap_dropped``) unless ``verify.reuse_calibration: true``; when ``verify.data`` is the
  calibration file itself, the samples after the first ``calibration.samples`` are used (held out);
- else ``calibration.data``: the samples after the first ``calibration.samples`` (those calibrate), disjoint
  ("calibration-held-out"); with ``verify.reuse_calibration: true`` the calibration samples themselves
  ("calibration-reused"); when none are left over, the set is empty and the task dict says what to give;
- else random inputs from the declared shapes ("random": the catastrophe check only).

Labels (classification): an .npz's ``labels`` array (integers, one per sample), an image folder with one
sub-folder per class named by the class index (``281`` or ``281_tabby``), or ``verify.labels``: a text file
with one integer label per line, in sample order (the .npz's order, the images' sorted relative paths).
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from generator.errors import UserError
from generator.loading.inputs import Point, make_inputs
from generator.spec import ModelSpec


@dataclass
class VerificationSet:
    samples: list[dict]
    labels: np.ndarray | None
    source: str  # verify.data | calibration-held-out | calibration-reused | random
    notes: list[str]


def _fingerprint(feeds: dict) -> str:
    h = hashlib.sha1()
    for k in sorted(feeds):
        h.update(k.encode())
        h.update(np.ascontiguousarray(feeds[k]).tobytes())
    return h.hexdigest()


def _read(model: ModelSpec, path: Path, n: int, where: str) -> list[dict]:
    from generator.loading.calibration import calibration_samples

    cal = dataclasses.replace(model.calibration, samples=n, data=path)
    return calibration_samples(dataclasses.replace(model, calibration=cal), None, lambda s: None, where=where)


def _labels(model: ModelSpec, path: Path, labels_file: Path | None, where: str) -> np.ndarray | None:
    """Every label of the data at ``path`` in sample order, or None when it carries none."""
    if labels_file is not None:
        lw = where.removesuffix(".data") + ".labels"
        if not labels_file.is_file():
            raise UserError(f"{lw}: '{labels_file}' not found; give a text file with one integer label per line")
        try:
            return np.array([int(x) for x in labels_file.read_text().split()], np.int64)
        except ValueError as e:
            raise UserError(f"{lw}: '{labels_file.name}' holds a line that is not an integer class index ({e})")
    if path.is_dir():
        from generator.loading.calibration_images import image_files

        files = image_files(path)
        if not any(p.parent != path for p in files):
            return None
        out = []
        for p in files:
            if p.parent == path:
                raise UserError(f"{where}: '{p.name}' lies outside the class sub-folders of '{path.name}'; put every "
                                "image in the sub-folder of its class index")
            m = re.match(r"^(\d+)(?:[_\- ].*)?$", p.parent.name)
            if not m:
                raise UserError(f"{where}: sub-folder '{p.parent.name}' does not start with a class index; name class "
                                "folders by the model's output index (e.g. 281 or 281_tabby)")
            out.append(int(m.group(1)))
        return np.array(out, np.int64)
    if path.suffix == ".npz":
        with np.load(path, allow_pickle=False) as z:
            if "labels" not in z.files:
                return None
            lab = z["labels"]
        if lab.ndim != 1 or lab.dtype.kind not in "iu":
            raise UserError(f"{where}: array 'labels' in '{path.name}' must be integers, one per sample "
                            f"(got {lab.dtype.name} {list(lab.shape)})")
        return lab.astype(np.int64)
    return None


def _check_labels(model: ModelSpec, labels: np.ndarray, count: int, where: str) -> None:
    classes = int(np.prod([d for d in model.outputs[0].shape if isinstance(d, int)] or [0]))
    if len(labels) < count:
        raise UserError(f"{where}: {len(labels)} labels for {count} samples; give one label per sample")
    if classes and (labels.min(initial=0) < 0 or labels.max(initial=0) >= classes):
        raise UserError(f"{where}: label {int(labels.max())} is outside the {classes} classes of output "
                        f"'{model.outputs[0].name}'; labels are output indices")


def verification_set(model: ModelSpec, n: int, data: Path | None = None, labels_file: Path | None = None,
                     reuse_calibration: bool = False, seed: int = 4321) -> VerificationSet:
    """Up to ``n`` samples (batch 1 each) for the task gate; see the module docstring."""
    cal = model.calibration
    notes: list[str] = []
    if data is None and cal.data is None:
        opt = tuple(sorted(model.dims_at("opt").items()))
        point = Point(1 if model.max_batch_size > 0 else 0, opt)
        return VerificationSet([make_inputs(model, point, seed=seed + i) for i in range(n)], None, "random", notes)
    if data is not None and (data != cal.data or reuse_calibration):
        where = f"{model.where}.verify.data"
        samples = _read(model, data, n, where)
        labels = _labels(model, data, labels_file, where)
        source = "verify.data"
        if labels is not None:
            _check_labels(model, labels, len(samples), where)
            labels = labels[: len(samples)]
        if cal.data is not None and not reuse_calibration:
            seen = {_fingerprint(s) for s in _read(model, cal.data, cal.samples, f"{model.where}.calibration.data")}
            keep = [i for i, s in enumerate(samples) if _fingerprint(s) not in seen]
            if len(keep) < len(samples):
                notes.append(f"{len(samples) - len(keep)} of verify.data's samples are also calibration samples: "
                             "left out (verify.reuse_calibration: true keeps them)")
                samples = [samples[i] for i in keep]
                labels = labels[keep] if labels is not None else None
        return VerificationSet(samples, labels, source, notes)
    # the calibration data (or verify.data naming the same file): held out, or reused when asked
    where = f"{model.where}.calibration.data"
    path = cal.data
    if reuse_calibration:
        samples = _read(model, path, n, where)
        skip, source = 0, "calibration-reused"
        notes.append("verify.reuse_calibration: the gate measures on calibration samples (optimistic)")
    else:
        every = _read(model, path, cal.samples + n, where)
        skip, source = min(cal.samples, len(every)), "calibration-held-out"
        samples = every[skip:]
        if not samples:
            notes.append(f"calibration.data has {len(every)} samples and calibration uses them all "
                         f"(calibration.samples {cal.samples}): none are left to verify on; give verify.data, a "
                         "larger calibration.data, or set verify.reuse_calibration: true")
    labels = _labels(model, path, labels_file, where)
    if labels is not None:
        _check_labels(model, labels, skip + len(samples), where)
        labels = labels[skip: skip + len(samples)]
    return VerificationSet(samples, labels, source, notes)
