"""Inputs made from the spec: verification points, random samples, and the PyTorch reference.

Everything that feeds a model (verification, calibration, warm-up, the perf harness) takes its
shapes, dtypes and integer ranges from here, never from hand-written flags.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from generator.errors import UserError
from generator.spec import ModelSpec, TensorSpec

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


VERIFY_MAX_BATCH = 64  # a huge max_batch_size is verified at this batch (one batch of 10^6 images would not fit)


def verification_points(model: ModelSpec) -> list[Point]:
    """Batch 1 and max_batch_size (at most VERIFY_MAX_BATCH) at the opt dims; min and max of each named dim at
    batch 1."""
    opt = model.dims_at("opt")
    batches = [1, min(model.max_batch_size, VERIFY_MAX_BATCH)] if model.max_batch_size > 0 else [0]
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


# --------------------------------------------------------------------------- calling forward() by name


@dataclass(frozen=True)
class CallPlan:
    """How the declared inputs reach ``forward``: as keyword arguments named after the declared inputs
    (``by_name``), or by position in declared order (a single input whose name matches no parameter, or a
    forward whose parameters cannot be read)."""

    by_name: bool
    params: tuple = ()  # forward()'s parameter names (for messages)
    positional: tuple | None = None  # by name, but called by position in this order (ExportedProgram modules)
    only_kwargs: tuple = ()  # declared inputs that match no named parameter and go into forward's **kwargs


def forward_parameters(module):
    """forward()'s parameters as [(name, kind, has_default)], or None when they cannot be read.

    kind: 'positional' | 'keyword' | 'var_positional' | 'var_keyword' | 'positional_only'.
    TorchScript modules are read from their schema; ExportedProgram modules from their signature.
    """
    import inspect

    fwd = getattr(module, "forward", None)
    schema = getattr(fwd, "schema", None)
    if schema is not None:  # TorchScript
        try:
            return [(a.name, "keyword" if a.kwarg_only else "positional", bool(a.has_default_value()))
                    for a in schema.arguments[1:]]
        except Exception:
            return None
    try:
        sig = inspect.signature(fwd if fwd is not None else module)
    except (TypeError, ValueError):
        return None
    kinds = {
        inspect.Parameter.POSITIONAL_ONLY: "positional_only",
        inspect.Parameter.POSITIONAL_OR_KEYWORD: "positional",
        inspect.Parameter.KEYWORD_ONLY: "keyword",
        inspect.Parameter.VAR_POSITIONAL: "var_positional",
        inspect.Parameter.VAR_KEYWORD: "var_keyword",
    }
    return [(p.name, kinds[p.kind], p.default is not inspect.Parameter.empty) for p in sig.parameters.values()]


def call_plan(module, model: ModelSpec) -> CallPlan:
    """Match the declared inputs to forward()'s parameters, up front; a mismatch is a one-line UserError.

    Every declared input must name a parameter (any name when forward takes ``**kwargs``); parameters
    without a default must all be declared; parameters with one that the spec omits keep their default.
    One input whose name matches no parameter, for a forward with one required parameter, is passed by
    position (``forward(self, x)`` declared as ``pixel_values``).
    """
    params = forward_parameters(module)
    if params is None:
        return CallPlan(by_name=False)
    names = [t.name for t in model.inputs]
    named = {n: (k, d) for n, k, d in params if k in ("positional", "keyword")}
    var_kw = any(k == "var_keyword" for _, k, _ in params)
    shown = ", ".join(("*" if k == "var_positional" else "**" if k == "var_keyword" else "") + n
                      for n, k, _ in params)
    required = [n for n, k, d in params if k in ("positional", "keyword", "positional_only") and not d]
    unknown = [n for n in names if n not in named]
    if not unknown or var_kw:
        missing = [n for n in required if n not in names]
        if missing:
            raise UserError(
                f"{model.where}.inputs: forward({shown}) needs '{missing[0]}' but no declared input has that name; "
                f"declare an input named '{missing[0]}' (inputs are passed by name)")
        order = None
        if getattr(module, "_in_spec", None) is not None:  # ExportedProgram.module(): takes what export took
            order = tuple(n for n, k, _ in params if k in ("positional", "positional_only") and n in names)
        return CallPlan(by_name=True, params=tuple(n for n, _, _ in params), positional=order,
                        only_kwargs=tuple(unknown))
    if len(names) == 1 and len(required) <= 1 and not any(n in named for n in names):
        return CallPlan(by_name=False, params=tuple(n for n, _, _ in params))
    if all(k in ("var_positional", "positional_only") for _, k, _ in params if k != "var_keyword") and params:
        return CallPlan(by_name=False, params=tuple(n for n, _, _ in params))  # forward(*args): order is all we have
    i = names.index(unknown[0])
    raise UserError(
        f"{model.where}.inputs[{i}].name: '{unknown[0]}' is not a parameter of forward({shown}); "
        "name each input after the forward() parameter it feeds (inputs are passed by name)")


def call_module(module, model: ModelSpec, plan: CallPlan, tensors: list):
    """``module`` called on ``tensors`` (in declared input order) as the plan says."""
    if plan.by_name:
        feeds = {t.name: x for t, x in zip(model.inputs, tensors)}
        if plan.positional is not None:
            return module(*[feeds[n] for n in plan.positional])
        return module(**feeds)
    return module(*tensors)


# --------------------------------------------------------------------------- outputs by key


def output_key(t: TensorSpec):
    """What picks output ``t`` from a dict / ModelOutput / tuple: the spec's ``key``, else its name."""
    return t.key if t.key is not None else t.name


def pick_outputs(out, model: ModelSpec) -> list:
    """The declared outputs, in declared order, from what forward() returned.

    A tensor is the one output; a dict or ``ModelOutput`` is indexed by key (the declared name, or the
    output's ``key:``; an integer key counts its tensor values in order); a tuple or list is flattened and
    taken in order, or indexed by integer keys when outputs give them.
    """
    import torch

    where = f"{model.where}.outputs"
    if isinstance(out, torch.Tensor):
        items = [out]
    elif _is_mapping(out):
        return [_pick_from_mapping(out, t, i, where) for i, t in enumerate(model.outputs)]
    elif isinstance(out, (list, tuple)):
        if any(isinstance(t.key, int) for t in model.outputs):
            return [_pick_from_sequence(out, t, i, where) for i, t in enumerate(model.outputs)]
        items = _flatten(out)
    elif hasattr(out, "to_tuple"):
        items = _flatten(out.to_tuple())
    else:
        raise UserError(f"{where}: forward() returned a {type(out).__name__}; return a tensor, a tuple of tensors "
                        "or a dict")
    bad = next(((i, t) for i, t in enumerate(model.outputs) if isinstance(t.key, str)), None)
    if bad is not None:
        raise UserError(f"{where}[{bad[0]}].key: '{bad[1].key}' is a dict key but forward() returns a "
                        f"{type(out).__name__}; use an integer index or remove key")
    if len(items) != len(model.outputs):
        raise UserError(
            f"{where}: the model returns {len(items)} tensor(s) but the spec declares "
            f"{len(model.outputs)}; declare one output per returned tensor, in order"
        )
    return items


def _is_mapping(out) -> bool:
    return isinstance(out, dict) or (hasattr(out, "keys") and hasattr(out, "__getitem__") and hasattr(out, "to_tuple"))


def _pick_from_mapping(out, t: TensorSpec, i: int, where: str):
    import torch

    key = output_key(t)
    tensors = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
    if isinstance(key, int):
        values = list(tensors.values())
        if not -len(values) <= key < len(values):
            raise UserError(f"{where}[{i}].key: index {key} is out of range: forward() returns {len(values)} "
                            f"tensor(s) ({', '.join(tensors)})")
        return values[key]
    if key not in tensors:
        field = "key" if t.key is not None else "name"
        raise UserError(
            f"{where}[{i}].{field}: '{key}' is not a tensor key of what forward() returns "
            f"(keys: {', '.join(tensors) or 'none'}); name the output after a key, or set key: to one")
    return tensors[key]


def _pick_from_sequence(out, t: TensorSpec, i: int, where: str):
    import torch

    if not isinstance(t.key, int):
        raise UserError(f"{where}[{i}].key: forward() returns a {type(out).__name__}: give every output an "
                        "integer key (its index) or none")
    if not -len(out) <= t.key < len(out) or not isinstance(out[t.key], torch.Tensor):
        raise UserError(f"{where}[{i}].key: index {t.key} is not a tensor of the {len(out)}-element "
                        f"{type(out).__name__} forward() returns")
    return out[t.key]


def torch_forward(module, model: ModelSpec, feeds: dict[str, np.ndarray], point: Point | None = None,
                  plan: CallPlan | None = None, root=None):
    """Run the PyTorch module on numpy inputs; returns {output name: ndarray}.

    Inputs are passed by name (see ``call_plan``); outputs are picked by key (see ``pick_outputs``).
    Checks what the spec promised: the output count and each output's shape.
    """
    import torch

    plan = plan or call_plan(module, model)
    args = [torch.from_numpy(np.ascontiguousarray(feeds[t.name])) for t in model.inputs]
    with torch.inference_mode():
        try:
            out = call_module(module, model, plan, args)
        except Exception as e:
            shapes = ", ".join(f"{k}{list(v.shape)}:{v.dtype}" for k, v in feeds.items())
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            at = (user_frame(e, root) if root is not None else None) or user_frame(e)
            raise UserError(
                f"{model.where}.inputs: forward() failed on the declared inputs ({shapes}): "
                f"{type(e).__name__}: {first}{f' (at {at})' if at else ''}; fix inputs (shape/dtype/range) "
                "to match what the model expects"
            )
    outs = pick_outputs(out, model)
    result = {}
    for i, (t, o) in enumerate(zip(model.outputs, outs)):
        arr = o.detach().cpu().numpy()
        if point is not None:
            _check_output_shape(model, i, t, arr, point)
        result[t.name] = arr
    return result


def user_frame(e: BaseException, root=None) -> str | None:
    """``file:line`` of the deepest traceback frame in the user's code: under ``root`` when given, else the
    deepest frame outside tritongen, torch and site-packages."""
    import os
    import traceback

    best = None
    for fs in traceback.extract_tb(e.__traceback__):
        f = os.path.abspath(fs.filename)
        if root is not None:
            if f.startswith(str(root) + os.sep) or os.path.realpath(f).startswith(os.path.realpath(root) + os.sep):
                best = f"{os.path.relpath(f, root)}:{fs.lineno}"
        elif is_user_file(fs.filename):
            best = f"{f}:{fs.lineno}"
    return best


def is_user_file(filename: str) -> bool:
    """Whether a source file is the user's: outside tritongen, installed packages (torch, transformers) and the
    standard library."""
    import os

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # the generator package
    f = os.path.abspath(filename)
    return not (f.startswith(here) or "site-packages" in f or "dist-packages" in f or filename.startswith("<")
                or "/lib/python3" in f)


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
    want = tensor_shape(t, point)  # -1: a dim that follows no input (checked by rank only)
    if len(got) != len(want) or any(w != -1 and g != w for g, w in zip(got, want)):
        if point.batch and (not got or got[0] != point.batch):  # the first dim is not the batch of this call
            raise UserError(
                f"{model.where}.outputs[{i}]: the model returns {list(got)} at {point.label}, without the batch dim "
                f"first; every output of a batching model needs it (max_batch_size > 0): return one row per sample "
                "(e.g. expand to [batch, ...]) or set max_batch_size: 0"
            )
        raise UserError(
            f"{model.where}.outputs[{i}].shape: declared {list(t.shape)} "
            f"({list(want)} at {point.label}) but the model returns {list(got[1:] if point.batch else got)}"
            f" (batch {got[0] if point.batch else '-'}); fix the declared shape"
        )
    if arr.dtype.name != t.dtype.numpy:
        raise UserError(
            f"{model.where}.outputs[{i}].dtype: declared {t.dtype.name} but the model returns {arr.dtype.name}"
        )
