"""TensorRT optimization profiles from the spec, their checks against the config, and the ONNX Runtime
TensorRT accelerator's values: pure, no TensorRT and no Polygraphy (rendering and validation use them).

See generator/stages/tensorrt.py for how profiles are declared (``options.profiles``) and built into plans.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Sequence

from generator.errors import UserError
from generator.spec import ModelSpec, VariantSpec

Shape = tuple[int, ...]
Range = tuple[int, int, int]  # (min, opt, max)


# --------------------------------------------------------------------------- profiles


@dataclass(frozen=True)
class Profile:
    """One TensorRT optimization profile.

    ``shapes``: per input, in the model's input order, ``(name, min_shape, opt_shape, max_shape)``
    with the batch dim included when the model batches. ``batch`` and ``dims`` are the ranges the
    shapes came from (kept for the config checks). ``dynamic`` is False for a model with no batch
    dim and no named dims: its ONNX export is static and takes no profile at all.
    """

    shapes: tuple[tuple[str, Shape, Shape, Shape], ...]
    batch: Range | None
    dims: tuple[tuple[str, Range], ...] = ()
    dynamic: bool = True

    def __getitem__(self, name: str) -> tuple[Shape, Shape, Shape]:
        for n, lo, opt, hi in self.shapes:
            if n == name:
                return lo, opt, hi
        raise KeyError(name)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s[0] for s in self.shapes)

    def dim(self, name: str) -> Range:
        return dict(self.dims)[name]

    def as_dict(self) -> dict:
        """JSON-friendly form for the manifest."""
        return {
            "batch": list(self.batch) if self.batch else None,
            "dims": {k: list(v) for k, v in self.dims},
            "shapes": {n: {"min": list(lo), "opt": list(opt), "max": list(hi)} for n, lo, opt, hi in self.shapes},
        }


def default_batch_range(model: ModelSpec) -> Range | None:
    """(1, opt, max_batch_size), opt = largest preferred batch size else max_batch_size; None if mbs 0."""
    mbs = model.max_batch_size
    if mbs == 0:
        return None
    pref = model.triton.dynamic_batching.preferred_batch_size if model.triton.dynamic_batching else ()
    opt = max(pref) if pref else mbs
    return (1, min(opt, mbs), mbs)


def _variant_index(model: ModelSpec, variant: VariantSpec) -> int:
    for i, v in enumerate(model.variants):
        if v.name == variant.name:
            return i
    raise ValueError(f"variant {variant.name!r} is not one of model {model.name!r}'s variants")


def _range(value: Any, where: str) -> Range:
    if (
        not isinstance(value, list)
        or len(value) != 3
        or not all(isinstance(x, int) and not isinstance(x, bool) for x in value)
    ):
        raise UserError(f"{where}: expected [min, opt, max] integers, got {value!r}")
    lo, opt, hi = value
    if lo < 1:
        raise UserError(f"{where}: min must be >= 1, got {lo}")
    if not lo <= opt <= hi:
        raise UserError(f"{where}: need min <= opt <= max, got [{lo}, {opt}, {hi}]")
    return (lo, opt, hi)


def _make_profile(model: ModelSpec, batch: Range | None, dims: Mapping[str, Range]) -> Profile:
    shapes = []
    for t in model.inputs:
        per = []
        for k in range(3):
            s = [batch[k]] if batch is not None else []
            s += [d if isinstance(d, int) else dims[d][k] for d in t.shape]
            per.append(tuple(s))
        shapes.append((t.name, per[0], per[1], per[2]))
    return Profile(
        shapes=tuple(shapes),
        batch=batch,
        dims=tuple((k, tuple(dims[k])) for k in model.dims),
        dynamic=model.max_batch_size > 0 or bool(model.dims),
    )


def profiles_for(model: ModelSpec, variant: VariantSpec | None = None) -> list[Profile]:
    """The optimization profiles for ``model`` (and ``variant.options.profiles`` when given).

    Raises UserError naming the option (``models[0].variants[2].options.profiles[1].batch: ...``).
    """
    base_batch = default_batch_range(model)
    base_dims = dict(model.dims)
    raw = (variant.options or {}).get("profiles") if variant is not None else None
    if raw is None:
        return [_make_profile(model, base_batch, base_dims)]

    where = f"{model.where}.variants[{_variant_index(model, variant)}].options.profiles"
    if not isinstance(raw, list) or not raw:
        raise UserError(f"{where}: expected a non-empty list of {{batch: [min, opt, max], <dim>: [min, opt, max]}}")
    allowed = (("batch",) if model.max_batch_size > 0 else ()) + tuple(model.dims)
    out = []
    for i, entry in enumerate(raw):
        w = f"{where}[{i}]"
        if not isinstance(entry, dict) or not entry:
            raise UserError(f"{w}: expected a mapping of {', '.join(allowed) or 'nothing (this model is static)'} to [min, opt, max]")
        for key in entry:
            if key == "batch" and model.max_batch_size == 0:
                raise UserError(f"{w}.batch: the model has max_batch_size 0 (no batch dim); remove it or set max_batch_size")
            if key not in allowed:
                raise UserError(
                    f"{w}.{key}: not a dim of this model; allowed keys: {', '.join(allowed) or 'none (static model)'}"
                )
        batch = base_batch
        if "batch" in entry:
            batch = _range(entry["batch"], f"{w}.batch")
            if batch[2] > model.max_batch_size:
                raise UserError(
                    f"{w}.batch: max {batch[2]} > max_batch_size {model.max_batch_size}; "
                    "a profile cannot go past the model's max_batch_size"
                )
        dims = dict(base_dims)
        for name in model.dims:
            if name in entry:
                dims[name] = _range(entry[name], f"{w}.{name}")
        out.append(_make_profile(model, batch, dims))
    return out


# --------------------------------------------------------------------------- config checks


def _groups(model: ModelSpec, n_profiles: int) -> list[tuple[str, list[int]]]:
    """(description, profile indexes) per instance group; groups naming none use profile 0."""
    groups = model.triton.instance_group
    if not groups:
        return [("the default instance group", [0])]
    out = []
    for j, g in enumerate(groups):
        w = f"{model.where}.triton.instance_group[{j}]"
        idx = []
        for k, p in enumerate(g.profile):
            if not re.fullmatch(r"\d+", p) or int(p) >= n_profiles:
                known = ", ".join(str(i) for i in range(n_profiles))
                hint = "" if n_profiles > 1 else "; list several under the variant's options.profiles"
                raise UserError(
                    f"{w}.profile[{k}]: '{p}' is not a profile index of this plan "
                    f"(it has {n_profiles} profile{'s' if n_profiles != 1 else ''}: {known}){hint}"
                )
            idx.append(int(p))
        out.append((w, idx or [0]))
    return out


def _union(ranges: Iterable[tuple[int, int]]) -> list[tuple[int, int]]:
    merged: list[list[int]] = []
    for lo, hi in sorted(ranges):
        if merged and lo <= merged[-1][1] + 1:
            merged[-1][1] = max(merged[-1][1], hi)
        else:
            merged.append([lo, hi])
    return [(a, b) for a, b in merged]


def _gaps(need: tuple[int, int], have: list[tuple[int, int]]) -> list[tuple[int, int]]:
    gaps, at = [], need[0]
    for lo, hi in have:
        if hi < at:
            continue
        if lo > need[1]:
            break
        if lo > at:
            gaps.append((at, min(lo - 1, need[1])))
        at = max(at, hi + 1)
    if at <= need[1]:
        gaps.append((at, need[1]))
    return gaps


def _fmt(ranges: list[tuple[int, int]]) -> str:
    return ", ".join(f"{a}" if a == b else f"{a}-{b}" for a, b in ranges) or "none"


def check_config_against_profiles(model: ModelSpec, profiles: Sequence[Profile]) -> None:
    """Refuse a config the plan cannot serve (UserError with the numbers).

    Per instance group (its named profiles, else profile 0): ``max_batch_size`` and every preferred
    batch size must fall in a profile, every batch size 1..max_batch_size must (the dynamic batcher
    forms any of them), and each named dim's declared [min, max] must be covered.
    """
    if not profiles:
        raise ValueError("no profiles")
    for desc, idx in _groups(model, len(profiles)):
        used = [profiles[i] for i in idx]
        which = f"TensorRT profile{'s' if len(idx) > 1 else ''} {', '.join(map(str, idx))} (used by {desc})"
        mbs = model.max_batch_size
        if mbs > 0:
            have = _union((p.batch[0], p.batch[2]) for p in used if p.batch)
            top = max(b for _, b in have)
            if mbs > top:
                raise UserError(
                    f"{model.where}.max_batch_size: {mbs} > {top}, the largest batch of {which}; "
                    f"lower max_batch_size to {top} or raise the profile's batch max"
                )
            db = model.triton.dynamic_batching
            for j, pb in enumerate(db.preferred_batch_size if db else ()):
                if _gaps((pb, pb), have):
                    raise UserError(
                        f"{model.where}.triton.dynamic_batching.preferred_batch_size[{j}]: {pb} is in no batch range "
                        f"of {which} (batch {_fmt(have)}); change it or add a profile covering it"
                    )
            gaps = _gaps((1, mbs), have)
            if gaps:
                raise UserError(
                    f"{model.where}.max_batch_size: {mbs}, but batch sizes {_fmt(gaps)} are in no batch range of "
                    f"{which} (batch {_fmt(have)}); the dynamic batcher can form any batch 1-{mbs}, "
                    "so make the profiles' batch ranges touch"
                )
        for name, (lo, _, hi) in model.dims.items():
            have = _union((p.dim(name)[0], p.dim(name)[2]) for p in used)
            gaps = _gaps((lo, hi), have)
            if gaps:
                raise UserError(
                    f"{model.where}.dims.{name}: declared [{lo}, {hi}] but {which} cover {name} {_fmt(have)} "
                    f"(missing {_fmt(gaps)}); widen the profile or narrow dims.{name}"
                )


# --------------------------------------------------------------------------- ONNX Runtime's TensorRT accelerator

_ORT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def ort_trt_accelerator(
    precision: str = "fp16",
    workspace_bytes: int = 1 << 30,
    engine_cache: bool = True,
    engine_cache_path: str = "/tmp",
    profile: Profile | None = None,
    extra: Mapping[str, str] | None = None,
) -> dict:
    """The ONNX Runtime backend's TensorRT execution accelerator, as plain values.

    Keys are those of triton-inference-server/onnxruntime_backend's README ("ONNX Runtime with
    TensorRT optimization"): precision_mode, max_workspace_size_bytes, trt_engine_cache_enable,
    trt_engine_cache_path, trt_profile_{min,opt,max}_shapes (``in1:1x3x224x224,in2:...``). Giving
    a ``profile`` keeps ORT from rebuilding its engine whenever a new shape arrives.
    """
    if precision not in _ORT_PRECISION:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(_ORT_PRECISION)}")
    params: dict[str, str] = {
        "precision_mode": _ORT_PRECISION[precision],
        "max_workspace_size_bytes": str(int(workspace_bytes)),
    }
    if engine_cache:
        params["trt_engine_cache_enable"] = "1"
        params["trt_engine_cache_path"] = str(engine_cache_path)
    if profile is not None and profile.dynamic:
        for key, k in (("trt_profile_min_shapes", 1), ("trt_profile_opt_shapes", 2), ("trt_profile_max_shapes", 3)):
            params[key] = ",".join(f"{s[0]}:{'x'.join(map(str, s[k]))}" for s in profile.shapes)
    for k, v in (extra or {}).items():
        params[str(k)] = str(v)
    return {"name": "tensorrt", "parameters": params}
