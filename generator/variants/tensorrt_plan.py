"""Variants ``trt-fp32``, ``trt-fp16``, ``trt-int8``, ``trt-best``: TensorRT plans for ``tensorrt_plan``.

Built with Polygraphy from the fp32 export (generator/stages/tensorrt.py), with optimization profiles from
the spec (batch from max_batch_size and preferred sizes, named dims from ``dims``; several via
``options.profiles``) and a persistent timing cache shared by every build in ``build/``.
``trt-int8`` calibrates with the spec's calibration data (entropy/minmax calibrator + cache).
Every build writes ``reproduce.sh`` with the equivalent ``trtexec`` command in the NGC TensorRT
container matching ``options.triton_release``. Where TensorRT or a GPU is absent the variant is
reported ``skipped: <reason>``, not an error (``tritongen build --require-all`` makes it one).
"""

from __future__ import annotations

from functools import partial
from pathlib import Path

from ..spec import ModelSpec, Tolerance, VariantSpec
from ..spec.options import OPTIONS as SPEC_OPTIONS
from .base import BuildContext, Skip, Variant

DEFAULT_TRITON_RELEASE = "24.10"
DEFAULT_WORKSPACE_MB = 4096
OPTIONS = ("profiles", "triton_release", "workspace_mb", "builder_optimization_level", "cuda_graphs")


def build(ctx: BuildContext, precision: str) -> None:
    from generator.stages import tensorrt as trt

    model, opts = ctx.model, ctx.options
    profiles = trt.profiles_for(model, ctx.variant)
    trt.check_config_against_profiles(model, profiles)
    release = opts.triton_release or DEFAULT_TRITON_RELEASE
    workspace_mb = opts.workspace_mb  # typed and checked with the spec (generator/spec/options.py)
    level = opts.builder_optimization_level
    onnx = ctx.base_onnx()
    root = onnx.parent.parent.parent  # build/
    key = f"{model.name}/{ctx.variant.name}"
    calib_cache = root / model.name / f"{ctx.variant.name}.calib.cache" if precision == "int8" else None
    ctx.reproduce_script = trt.reproduce_script(
        onnx, root / key / "artifact" / "model.plan", profiles, precision, workspace_mb, root / "timing.cache",
        release, calib_cache=calib_cache, builder_optimization_level=level, workdir=root,
    )
    ctx.info["profiles"] = [p.as_dict() for p in profiles]
    ctx.info["trtexec"] = trt.trtexec_command(onnx, ctx.artifact_dir / "model.plan", profiles, precision,
                                              workspace_mb, root / "timing.cache", calib_cache, level)
    data = None
    if precision == "int8":
        method = trt.trt_calibration_method(model)
        data = ctx.calibration()
    else:
        method = "entropy"
    try:
        ctx.info["tensorrt"] = trt.build_engine(
            onnx, ctx.artifact_dir / "model.plan", profiles, precision, root / "timing.cache",
            workspace_mb * 1024 * 1024, builder_optimization_level=level, calibrator_data=data,
            calib_cache=calib_cache, calibration_method=method,
        )
    except trt.TensorRTUnavailable as e:
        raise Skip(e.reason) from None


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    from polygraphy.backend.common import BytesFromPath
    from polygraphy.backend.trt import EngineFromBytes, TrtRunner

    trt_runner = TrtRunner(EngineFromBytes(BytesFromPath(str(artifact_dir / "model.plan"))))
    trt_runner.activate()
    names = [t.name for t in model.outputs]

    def run(feeds):
        out = trt_runner.infer(feeds)
        return {n: out[n] for n in names}

    return run


def _variant(precision: str, tol: Tolerance) -> Variant:
    return Variant(
        key=f"trt-{precision}",
        backend="tensorrt",
        precision=precision,
        tolerance=tol,
        build=partial(build, precision=precision),
        runner=runner,
        options=SPEC_OPTIONS[f"trt-{precision}"],
        description=f"TensorRT {precision} plan (Polygraphy builder, profiles from the spec)",
    )


TRT_FP32 = _variant("fp32", Tolerance(atol=1e-3, rtol=1e-3, min_cosine=0.9999))
TRT_FP16 = _variant("fp16", Tolerance(atol=5e-2, rtol=5e-2, min_cosine=0.999))
TRT_INT8 = _variant("int8", Tolerance(min_cosine=0.98))
TRT_BEST = _variant("best", Tolerance(min_cosine=0.98))
VARIANTS = (TRT_FP32, TRT_FP16, TRT_INT8, TRT_BEST)
