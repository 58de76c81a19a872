"""TensorRT plans: optimization profiles, the builder (Polygraphy), trtexec, provenance, config values.

Everything here is pure and testable without TensorRT except :func:`build_engine`, which imports
``tensorrt`` lazily and raises :class:`TensorRTUnavailable` where it cannot run (no TensorRT, no GPU),
so a caller records ``skipped: <reason>`` and goes on.

Profiles
    A :class:`Profile` maps every input to full (batch-included) min/opt/max shapes. The default,
    one profile per model, is: batch ``min=1``, ``opt`` = the largest
    ``triton.dynamic_batching.preferred_batch_size`` (the batch the dynamic batcher aims for under
    load) or else ``max_batch_size`` (without preferred sizes the batcher fills batches up to the
    maximum), ``max=max_batch_size``; named dims take ``dims: {name: [min, opt, max]}``.
    ``max_batch_size: 0`` means no batch dim. A variant may list several profiles::

        variants:
          - name: trt-fp16
            options:
              profiles:
                - {batch: [1, 1, 4]}
                - {batch: [8, 16, 32], seq: [16, 128, 512]}

    Each entry takes ``batch`` and any named dim; what it leaves out comes from the model-level
    default. Instance groups pick profiles by index string, as in Triton's config
    (``triton.instance_group[].profile: ["1"]``); a group that names none uses profile 0 (Triton's
    rule: "If not specified, the server will select the first optimization profile by default").

The Triton release -> TensorRT table is :data:`TRITON_TRT`; see its comment for sources.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# Polygraphy loaders. Importing them needs no TensorRT (Polygraphy imports it lazily, on first use);
# they are module-level names so a test can substitute them where TensorRT is absent.
from polygraphy.backend.trt import Calibrator, CreateConfig
from polygraphy.backend.trt import Profile as PolygraphyProfile
from polygraphy.backend.trt import engine_from_network, network_from_onnx_path, save_engine

from .errors import UserError
from .spec import ModelSpec, VariantSpec

Shape = tuple[int, ...]
Range = tuple[int, int, int]  # (min, opt, max)

PRECISIONS = ("fp32", "fp16", "int8", "best")
# spec calibration.method -> TensorRT calibrator class. 'percentile' has no TensorRT counterpart
# (IInt8LegacyCalibrator's quantile/regression cutoff is a different algorithm).
TRT_CALIBRATORS = {"entropy": "IInt8EntropyCalibrator2", "minmax": "IInt8MinMaxCalibrator"}


class TensorRTUnavailable(Exception):
    """TensorRT cannot build here (not importable, lean runtime only, or no CUDA GPU).

    ``reason`` is one line for the manifest: ``skipped: <reason>``.
    """

    def __init__(self, reason: str):
        self.reason = " ".join(str(reason).split())
        super().__init__(self.reason)


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


# --------------------------------------------------------------------------- trtexec


def _shape_arg(name: str, shape: Shape) -> str:
    # trtexec splits on ',' and on the last ':'; names with those characters go in single quotes.
    n = f"'{name}'" if re.search(r"[:,\s']", name) else name
    return f"{n}:{'x'.join(str(d) for d in shape)}"


def _check_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")


def trtexec_command(
    onnx_path: str | Path,
    plan_path: str | Path,
    profiles: Sequence[Profile],
    precision: str,
    workspace_mb: int,
    timing_cache: str | Path,
    calib_cache: str | Path | None = None,
    builder_optimization_level: int | None = 3,
) -> list[str]:
    """The trtexec argv that builds the same plan as :func:`build_engine`.

    One --minShapes/--optShapes/--maxShapes triple per profile, in profile order (trtexec makes
    one optimization profile per repeated triple). TF32: trtexec enables it by default and
    Polygraphy disables it by default; tritongen turns it off for fp32 (``--noTF32``) and leaves it
    on otherwise, the same in both builders. int8 without ``calib_cache`` assumes a Q/DQ ONNX
    (explicit quantization); with implicit quantization and no cache, trtexec would use
    placeholder scales.
    """
    _check_precision(precision)
    argv = ["trtexec", f"--onnx={onnx_path}", f"--saveEngine={plan_path}"]
    for p in profiles:
        if not p.dynamic:
            continue
        for flag, k in (("--minShapes", 1), ("--optShapes", 2), ("--maxShapes", 3)):
            argv.append(f"{flag}=" + ",".join(_shape_arg(s[0], s[k]) for s in p.shapes))
    argv += {"fp32": ["--noTF32"], "fp16": ["--fp16"], "int8": ["--int8"], "best": ["--best"]}[precision]
    if calib_cache is not None and precision in ("int8", "best"):
        argv.append(f"--calib={calib_cache}")
    argv.append(f"--memPoolSize=workspace:{int(workspace_mb)}M")
    if builder_optimization_level is not None:
        argv.append(f"--builderOptimizationLevel={int(builder_optimization_level)}")
    argv.append(f"--timingCacheFile={timing_cache}")
    return argv


def tensorrt_container(triton_release: str) -> str:
    """The NGC TensorRT image with the same TensorRT as ``tritonserver:<release>-py3``."""
    return f"nvcr.io/nvidia/tensorrt:{_release(triton_release)}-py3"


def reproduce_script(
    onnx_path: str | Path,
    plan_path: str | Path,
    profiles: Sequence[Profile],
    precision: str,
    workspace_mb: int,
    timing_cache: str | Path,
    triton_release: str,
    calib_cache: str | Path | None = None,
    builder_optimization_level: int | None = 3,
    workdir: str | Path | None = None,
) -> str:
    """A bash script that rebuilds the plan with trtexec in the matching NGC TensorRT container.

    ``workdir`` (default: the common folder of the files) is mounted at /w; file paths must lie
    under it and appear relative to it. The script runs from any directory.
    """
    paths = [Path(onnx_path), Path(plan_path), Path(timing_cache)] + ([Path(calib_cache)] if calib_cache else [])
    root = Path(workdir) if workdir is not None else Path(os.path.commonpath([str(p.parent) for p in paths]))

    def rel(p: str | Path | None) -> str | None:
        if p is None:
            return None
        try:
            return Path(p).relative_to(root).as_posix()
        except ValueError:
            raise ValueError(f"{p} is not under {root}; pass a workdir that holds every file") from None

    argv = trtexec_command(
        rel(onnx_path), rel(plan_path), profiles, precision, workspace_mb, rel(timing_cache),
        rel(calib_cache), builder_optimization_level,
    )
    image = tensorrt_container(triton_release)
    trt = trt_version_for_triton(triton_release)
    cmd = " ".join(shlex.quote(a) for a in argv)
    return (
        "#!/usr/bin/env bash\n"
        f"# Rebuild {Path(plan_path).name} with trtexec. TensorRT plans only load in the TensorRT that built\n"
        f"# them on the same GPU architecture: tritonserver:{_release(triton_release)}-py3 bundles TensorRT {trt},\n"
        f"# and so does {image}. Run this on a machine with the target GPU.\n"
        "set -euo pipefail\n"
        f"WORKDIR=${{WORKDIR:-{shlex.quote(str(root))}}}\n"
        f'docker run --gpus all --rm -v "$WORKDIR":/w -w /w {image} \\\n'
        f"  {cmd}\n"
        "# Without Docker, with trtexec on PATH, from $WORKDIR:\n"
        f"#   {cmd}\n"
    )


# --------------------------------------------------------------------------- builder


def _import_tensorrt():
    try:
        import tensorrt as trt  # noqa: PLC0415
    except Exception as e:  # ImportError, or a broken install raising OSError on its libraries
        raise TensorRTUnavailable(f"TensorRT not importable ({type(e).__name__}: {e})") from None
    if not hasattr(trt, "Builder"):
        raise TensorRTUnavailable("TensorRT not importable: this tensorrt has no Builder (lean/dispatch runtime only)")
    return trt


def _gpu_info() -> dict:
    """{'gpu': name, 'compute_capability': 'M.m'} of CUDA device 0, or TensorRTUnavailable('no GPU ...')."""
    try:
        import torch  # noqa: PLC0415

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return {"gpu": torch.cuda.get_device_name(0), "compute_capability": f"{major}.{minor}"}
    except Exception:  # torch absent or CUDA init failed: ask the driver instead
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=30, check=True,
            ).stdout.strip().splitlines()
            if out:
                name, cc = (x.strip() for x in out[0].rsplit(",", 1))
                return {"gpu": name, "compute_capability": cc}
        except (subprocess.SubprocessError, ValueError, OSError):
            pass
    raise TensorRTUnavailable("no GPU: no CUDA device visible to torch or nvidia-smi")


def trt_calibration_method(model: ModelSpec) -> str:
    """The spec's calibration.method if TensorRT has a calibrator for it, else UserError."""
    m = model.calibration.method
    if m not in TRT_CALIBRATORS:
        raise UserError(
            f"{model.where}.calibration.method: '{m}' has no TensorRT calibrator; "
            f"use {' or '.join(TRT_CALIBRATORS)} for TensorRT int8"
        )
    return m


def build_engine(
    onnx_path: str | Path,
    plan_path: str | Path,
    profiles: Sequence[Profile],
    precision: str,
    timing_cache_path: str | Path,
    workspace_bytes: int,
    builder_optimization_level: int | None = 3,
    calibrator_data: Iterable[Mapping[str, Any]] | None = None,
    calib_cache: str | Path | None = None,
    calibration_method: str = "entropy",
) -> dict:
    """Build and save a TensorRT plan with Polygraphy; return its provenance.

    Raises TensorRTUnavailable when TensorRT is not importable or no CUDA GPU is visible.
    ``calibrator_data``: batches ``{input name: array}`` for implicit int8 calibration (the last
    profile is the calibration profile); with only ``calib_cache`` the cache is read; with neither,
    int8 assumes a Q/DQ (explicitly quantized) ONNX. The timing cache is read if present and
    written back (appended) after the build.
    """
    _check_precision(precision)
    if calibration_method not in TRT_CALIBRATORS:
        raise ValueError(f"calibration_method {calibration_method!r} is not one of {', '.join(TRT_CALIBRATORS)}")
    trt = _import_tensorrt()
    gpu = _gpu_info()

    int8 = precision in ("int8", "best")
    flags = {
        "tf32": precision != "fp32",
        "fp16": precision in ("fp16", "best"),
        "int8": int8,
    }
    poly_profiles = []
    for p in profiles:
        if not p.dynamic:
            continue
        pp = PolygraphyProfile()
        for name, lo, opt, hi in p.shapes:
            pp.add(name, min=lo, opt=opt, max=hi)
        poly_profiles.append(pp)

    calibrator = None
    int8_mode = None
    if int8:
        if calibrator_data is not None or calib_cache is not None:
            base = getattr(trt, TRT_CALIBRATORS[calibration_method])
            calibrator = Calibrator(
                calibrator_data if calibrator_data is not None else [],
                cache=str(calib_cache) if calib_cache is not None else None,
                BaseClass=base,
            )
            int8_mode = f"implicit ({TRT_CALIBRATORS[calibration_method]}, " + (
                "calibration data)" if calibrator_data is not None else "calibration cache)"
            )
        else:
            int8_mode = "explicit (Q/DQ in the ONNX)"

    timing_cache_path = Path(timing_cache_path)
    timing_cache_path.parent.mkdir(parents=True, exist_ok=True)
    plan_path = Path(plan_path)
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    kwargs: dict[str, Any] = dict(
        tf32=flags["tf32"],
        fp16=flags["fp16"],
        int8=flags["int8"],
        profiles=poly_profiles or None,
        load_timing_cache=str(timing_cache_path),
        memory_pool_limits={trt.MemoryPoolType.WORKSPACE: int(workspace_bytes)},
    )
    if builder_optimization_level is not None:
        kwargs["builder_optimization_level"] = int(builder_optimization_level)
    if calibrator is not None:
        kwargs["calibrator"] = calibrator
    config = CreateConfig(**kwargs)

    t0 = time.perf_counter()
    network = network_from_onnx_path(str(onnx_path))
    engine = engine_from_network(network, config=config, save_timing_cache=str(timing_cache_path))
    save_engine(engine, path=str(plan_path))
    seconds = time.perf_counter() - t0

    import polygraphy  # noqa: PLC0415

    out = {
        "tensorrt_version": trt.__version__,
        "polygraphy_version": polygraphy.__version__,
        **gpu,
        "precision": precision,
        "builder_flags": flags,
        "int8_mode": int8_mode,
        "builder_optimization_level": builder_optimization_level,
        "workspace_bytes": int(workspace_bytes),
        "profiles": [p.as_dict() for p in profiles],
        "timing_cache": str(timing_cache_path),
        "calib_cache": str(calib_cache) if calib_cache is not None else None,
        "build_seconds": round(seconds, 3),
    }
    if plan_path.is_file():
        out["plan_bytes"] = plan_path.stat().st_size
        out["plan_sha256"] = hashlib.sha256(plan_path.read_bytes()).hexdigest()
    return out


# --------------------------------------------------------------------------- Triton <-> TensorRT

# TensorRT in the standard nvcr.io/nvidia/tritonserver:<release>-py3 images (the -trtllm-python-py3
# images carry other TensorRT versions and are not covered). The nvcr.io/nvidia/tensorrt:<release>-py3
# image of the same release carries the same TensorRT. Sources: NVIDIA Deep Learning Frameworks
# Support Matrix and the Triton release notes ("Contents of the Triton Inference Server container",
# https://docs.nvidia.com/deeplearning/triton-inference-server/release-notes/); 24.02-24.04 = 8.6.3
# per triton-inference-server/server#6959 (maintainer: "Triton base image includes ... TensorRT
# version 8.6.3"); TensorRT 10 from 24.05 per NVIDIA/TensorRT#3796. Checks compare major.minor.
TRITON_TRT: dict[str, str] = {
    "24.01": "8.6.1.6",
    "24.02": "8.6.3",
    "24.03": "8.6.3",
    "24.04": "8.6.3",
    "24.05": "10.0.1.6",
    "24.06": "10.1.0.27",
    "24.07": "10.2.0.19",
    "24.08": "10.3.0.26",
    "24.09": "10.4.0.26",
    "24.10": "10.5.0.18",
    "24.11": "10.6.0.26",
    "24.12": "10.7.0.23",
    "25.01": "10.8.0.43",
    "25.02": "10.8.0.43",
    "25.03": "10.9.0.34",
    "25.04": "10.9.0.34",
    "25.05": "10.10.0.31",
    "25.06": "10.11.0.33",
    "25.07": "10.11.0.33",
    "25.08": "10.13.2.6",
    "25.09": "10.13.3.9",
    "25.10": "10.13.3.9",
}


def _release(release: str) -> str:
    r = str(release).strip()
    r = re.sub(r"^r", "", r)
    r = re.sub(r"-py3$", "", r)
    return r


def trt_version_for_triton(release: str, where: str = "triton_release") -> str:
    """TensorRT bundled with ``tritonserver:<release>-py3`` (accepts '24.10', 'r24.10', '24.10-py3')."""
    r = _release(release)
    if r not in TRITON_TRT:
        raise UserError(
            f"{where}: Triton release '{release}' is not in tritongen's TensorRT table; "
            f"known: {', '.join(TRITON_TRT)}"
        )
    return TRITON_TRT[r]


def _major_minor(version: str) -> tuple[int, ...]:
    nums = re.findall(r"\d+", str(version))
    return tuple(int(x) for x in nums[:2])


def check_provenance(manifest_trt: Mapping[str, Any], triton_release: str, target_cc: str | None = None) -> list[str]:
    """Warnings (empty list when fine) for serving a plan, given its build provenance.

    TensorRT plans load only in the TensorRT version that built them (major.minor compared here)
    and on the GPU architecture they were built for (compute capability).
    """
    warnings = []
    server = trt_version_for_triton(triton_release)
    built = manifest_trt.get("tensorrt_version")
    r = _release(triton_release)
    if not built:
        warnings.append(
            f"plan has no recorded TensorRT version; tritonserver:{r}-py3 needs a plan built with TensorRT {server}"
        )
    elif _major_minor(built) != _major_minor(server):
        warnings.append(
            f"plan built with TensorRT {built} but tritonserver:{r}-py3 bundles TensorRT {server}; "
            f"it will not load: rebuild it in {tensorrt_container(r)} (see the variant's reproduce.sh)"
        )
    cc = manifest_trt.get("compute_capability")
    if target_cc is not None:
        if not cc:
            warnings.append(f"plan has no recorded compute capability; the target GPU is {target_cc}")
        elif str(cc) != str(target_cc):
            warnings.append(
                f"plan built on compute capability {cc} ({manifest_trt.get('gpu', 'unknown GPU')}) but the target "
                f"GPU is {target_cc}; TensorRT plans are specific to the GPU architecture: rebuild on the target"
            )
    return warnings


# --------------------------------------------------------------------------- config values


def plan_config_context(
    model: ModelSpec, profiles: Sequence[Profile], cuda_graphs: bool = False
) -> dict:
    """Values for a ``platform: "tensorrt_plan"`` config.

    Instance groups are the spec's with kind forced to KIND_GPU (a plan runs only on a GPU; the
    spec's default kind is KIND_CPU), or one KIND_GPU instance. Checks the profiles first.
    """
    check_config_against_profiles(model, profiles)
    groups = [
        {"count": g.count, "kind": "KIND_GPU", "gpus": list(g.gpus), "profile": list(g.profile)}
        for g in model.triton.instance_group
    ] or [{"count": 1, "kind": "KIND_GPU", "gpus": [], "profile": []}]
    return {
        "platform": "tensorrt_plan",
        "backend": "tensorrt",
        "default_model_filename": "model.plan",
        "instance_group": groups,
        "optimization": {"cuda": {"graphs": True}} if cuda_graphs else {},
        "profiles": [p.as_dict() for p in profiles],
    }


def plan_config_pbtxt(ctx: Mapping[str, Any]) -> str:
    """The instance_group and optimization text of :func:`plan_config_context`'s values."""
    lines = ["instance_group ["]
    items = []
    for g in ctx["instance_group"]:
        parts = [f"count: {g['count']}", f"kind: {g['kind']}"]
        if g["gpus"]:
            parts.append(f"gpus: [ {', '.join(str(x) for x in g['gpus'])} ]")
        if g["profile"]:
            parts.append(f"profile: [ {', '.join(_q(p) for p in g['profile'])} ]")
        items.append("  { " + " ".join(parts) + " }")
    lines.append(",\n".join(items))
    lines.append("]")
    if ctx.get("optimization", {}).get("cuda", {}).get("graphs"):
        lines.append("optimization { cuda { graphs: true } }")
    return "\n".join(lines) + "\n"


_ORT_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def _q(s: str) -> str:
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"') + '"'


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


def ort_trt_accelerator_pbtxt(
    precision: str = "fp16",
    workspace_bytes: int = 1 << 30,
    engine_cache: bool = True,
    engine_cache_path: str = "/tmp",
    profile: Profile | None = None,
    extra: Mapping[str, str] | None = None,
) -> str:
    """``optimization { execution_accelerators { gpu_execution_accelerator : [ ... ] } }`` text."""
    acc = ort_trt_accelerator(precision, workspace_bytes, engine_cache, engine_cache_path, profile, extra)
    lines = [
        "optimization { execution_accelerators {",
        "  gpu_execution_accelerator : [ {",
        f"    name : {_q(acc['name'])}",
    ]
    lines += [f"    parameters {{ key: {_q(k)} value: {_q(v)} }}" for k, v in acc["parameters"].items()]
    lines += ["  } ]", "} }"]
    return "\n".join(lines) + "\n"
