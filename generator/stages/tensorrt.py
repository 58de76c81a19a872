"""TensorRT plans: the builder (Polygraphy), trtexec, provenance; profiles re-exported from trt_profiles.

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

The Triton release -> TensorRT table is :data:`TRITON_TRT` (generator/tables/trt_release.py); see its comment for sources.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

# Polygraphy loaders. Importing them needs no TensorRT (Polygraphy imports it lazily, on first use);
# they are module-level names so a test can substitute them where TensorRT is absent.
from polygraphy.backend.trt import Calibrator, CreateConfig
from polygraphy.backend.trt import Profile as PolygraphyProfile
from polygraphy.backend.trt import engine_from_network, network_from_onnx_path, save_engine

from generator.errors import UserError
from generator.spec import ModelSpec
from generator.tables.trt_release import TRITON_TRT, _major_minor, _release, check_provenance, tensorrt_container, trt_version_for_triton
from generator.config.trt_profiles import Profile, Range, Shape, check_config_against_profiles, default_batch_range, ort_trt_accelerator, profiles_for

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
