"""Inputs made from the spec: verification points, random samples, and the PyTorch reference.

Everything that feeds a model (verification, calibration, warm-up, the perf harness) takes its
shapes, dtypes and integer ranges from here, never from hand-written flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .errors import UserError
from .spec import ModelSpec, TensorSpec

DEFAULT_INT_RANGE = (0, 2)


@dataclass(frozen=True)
class Point:
    """One shape the variant must handle: a batch size and a value per named dim."""

    batch: int  # 0 = the model takes no batch dim
    dims: tuple  # ((name, value), ...)

    @property
    def label(self) -> str:
        parts = [f"batch={self.batch}"] if self.batch else ["no-batch"]
        parts += [f"{k}={v}" for k, v in self.dims]
        return ",".join(parts)


def verification_points(model: ModelSpec) -> list[Point]:
    """Batch 1 and max_batch_size at the opt dims; min and max of each named dim at batch 1."""
    opt = model.dims_at("opt")
    batches = [1, model.max_batch_size] if model.max_batch_size > 0 else [0]
    pts = [Point(b, tuple(sorted(opt.items()))) for b in batches]
    b1 = batches[0]
    for name, (lo, _, hi) in model.dims.items():
        for v in (lo, hi):
            pts.append(Point(b1, tuple(sorted({**opt, name: v}.items()))))
    seen, out = set(), []
    for p in pts:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return out


def tensor_shape(t: TensorSpec, point: Point) -> tuple[int, ...]:
    shape = t.concrete(dict(point.dims))
    return (point.batch, *shape) if point.batch else shape


def random_tensor(t: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    dt = np.dtype(t.dtype.numpy)
    if t.dtype.is_float:
        return rng.standard_normal(shape).astype(dt)
    if t.dtype.name == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    lo, hi = t.range or DEFAULT_INT_RANGE
    return rng.integers(lo, hi, shape).astype(dt)


def make_inputs(model: ModelSpec, point: Point, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {t.name: random_tensor(t, tensor_shape(t, point), rng) for t in model.inputs}


def torch_forward(module, model: ModelSpec, feeds: dict[str, np.ndarray], point: Point | None = None):
    """Run the PyTorch module on numpy inputs; returns {output name: ndarray}.

    Checks what the spec promised: the output count and each output's shape.
    """
    import torch

    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in model.inputs]
    with torch.inference_mode():
        try:
            out = module(*args)
        except Exception as e:
            shapes = ", ".join(f"{k}{list(v.shape)}:{v.dtype}" for k, v in feeds.items())
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(
                f"{model.where}.inputs: forward() failed on the declared inputs ({shapes}): "
                f"{type(e).__name__}: {first}; fix inputs (shape/dtype/range) to match what the model expects"
            )
    outs = _flatten(out)
    if len(outs) != len(model.outputs):
        raise UserError(
            f"{model.where}.outputs: the model returns {len(outs)} tensor(s) but the spec declares "
            f"{len(model.outputs)}; declare one output per returned tensor, in order"
        )
    result = {}
    for i, (t, o) in enumerate(zip(model.outputs, outs)):
        arr = o.detach().cpu().numpy()
        if point is not None:
            _check_output_shape(model, i, t, arr, point)
        result[t.name] = arr
    return result


def _flatten(out) -> list:
    import torch

    if isinstance(out, torch.Tensor):
        return [out]
    if isinstance(out, dict):
        return [v for v in out.values() if isinstance(v, torch.Tensor)]
    if isinstance(out, (list, tuple)):
        flat = []
        for o in out:
            flat.extend(_flatten(o))
        return flat
    if hasattr(out, "to_tuple"):  # HF ModelOutput
        return _flatten(out.to_tuple())
    raise UserError(f"forward() returned a {type(out).__name__}; return a tensor, a tuple of tensors or a dict")


def _check_output_shape(model: ModelSpec, i: int, t: TensorSpec, arr: np.ndarray, point: Point) -> None:
    got = tuple(arr.shape)
    want = tensor_shape(t, point)
    if got != want:
        raise UserError(
            f"{model.where}.outputs[{i}].shape: declared {list(t.shape)} "
            f"({list(want)} at {point.label}) but the model returns {list(got[1:] if point.batch else got)}"
            f" (batch {got[0] if point.batch else '-'}); fix the declared shape"
        )
    if arr.dtype.name != t.dtype.numpy:
        raise UserError(
            f"{model.where}.outputs[{i}].dtype: declared {t.dtype.name} but the model returns {arr.dtype.name}"
        )
