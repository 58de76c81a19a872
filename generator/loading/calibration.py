"""Calibration samples for INT8: from the spec's ``calibration.data`` (.npz, one array per input,
first axis = samples) or random samples drawn from the declared shapes (with a warning: accuracy
numbers are then meaningless)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from generator.errors import UserError
from generator.loading.inputs import Point, make_inputs
from generator.spec import ModelSpec


def calibration_samples(model: ModelSpec, root: Path, log: Callable[[str], None],
                        where: str | None = None) -> list[dict[str, np.ndarray]]:
    """A list of feeds, each with batch 1 (or no batch dim when max_batch_size is 0). ``where`` names the
    field in errors (default: the model's calibration.data; verify.data reads its set through here too)."""
    cal = model.calibration
    where = where or f"{model.where}.calibration.data"
    if cal.data is None:
        log(f"no calibration.data: using {cal.samples} random samples; INT8 accuracy numbers are then meaningless")
        opt = tuple(sorted(model.dims_at("opt").items()))
        point = Point(1 if model.max_batch_size > 0 else 0, opt)
        return [make_inputs(model, point, seed=10_000 + i) for i in range(cal.samples)]
    path = cal.data
    if path.is_dir():
        from generator.loading.calibration_images import image_samples

        return image_samples(model, path, where)
    if not path.is_file():
        raise UserError(f"{where}: '{path}' not found; give an .npz file (one array per input) or an image folder")
    if path.suffix == ".txt":  # sentences, one a line, through the model's tokenizer (generator/loading/hf.py)
        from generator.loading.hf import text_samples

        return text_samples(model, path, where)
    if path.suffix != ".npz":
        raise UserError(f"{where}: '{path.name}' is not an .npz file; save one array per input with numpy.savez")
    import zipfile

    if not zipfile.is_zipfile(path):  # np.load would call it pickled data and suggest allow_pickle (never do that)
        raise UserError(f"{where}: '{path.name}' is not an .npz archive; save one array per input with numpy.savez")
    try:
        data = dict(np.load(path, allow_pickle=False))
    except Exception as e:
        raise UserError(f"{where}: cannot read '{path.name}' ({str(e).splitlines()[0][:150]}); save one array per input "
                        "with numpy.savez (no object arrays)")
    names = [t.name for t in model.inputs]
    missing = [n for n in names if n not in data]
    if missing:
        raise UserError(f"{where}: '{path.name}' has no array '{missing[0]}' (it has {', '.join(data) or 'none'}); "
                        f"save one array per input: {', '.join(names)}")
    extra = [k for k in data if k not in names and k != "labels"]  # labels: the task gate's (generator/stages/gate_data.py)
    if extra:
        raise UserError(f"{where}: '{path.name}' has array '{extra[0]}', which is not a model input ({', '.join(names)})")
    counts = {data[n].shape[0] if data[n].ndim else 0 for n in names}
    if len(counts) != 1 or 0 in counts:
        raise UserError(f"{where}: arrays in '{path.name}' need the same number of samples on axis 0 (got {sorted(counts)})")
    n = counts.pop()
    for t in model.inputs:
        arr = data[t.name]
        if arr.dtype.name != t.dtype.numpy:
            raise UserError(f"{where}: array '{t.name}' is {arr.dtype.name} but the input is {t.dtype.name}; convert it")
        shape = arr.shape[1:]
        if len(shape) != len(t.shape) or any(isinstance(d, int) and d != s for d, s in zip(t.shape, shape)):
            raise UserError(f"{where}: array '{t.name}' has sample shape {list(shape)} but the input is {list(t.shape)}")
        for d, s in zip(t.shape, shape):
            if isinstance(d, str) and not model.dims[d][0] <= s <= model.dims[d][2]:
                raise UserError(f"{where}: array '{t.name}' dim '{d}'={s} is outside dims.{d} {list(model.dims[d])}")
    n = min(n, cal.samples) if cal.samples else n
    batched = model.max_batch_size > 0
    return [{t.name: (data[t.name][i:i + 1] if batched else data[t.name][i]) for t in model.inputs} for i in range(n)]
