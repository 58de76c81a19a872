"""Variant ``openvino``: OpenVINO IR (``model.xml`` + ``model.bin``, fp32 weights) for Triton's openvino
backend (CPU only).

Stages: the optimised fp32 ONNX -> ``openvino.convert_model`` -> ``openvino.save_model(compress_to_fp16=False)``.
Options:
- ``inference_precision``: f32 (default) | bf16 -- bf16 needs avx512_bf16 or AMX (Skip elsewhere);
- ``performance_hint``: LATENCY (default) | THROUGHPUT -- THROUGHPUT pays off only with concurrent requests;
- ``num_streams``: an integer, or AUTO.
They become the backend's config ``parameters`` (PERFORMANCE_HINT, NUM_STREAMS, HINT_BF16,
INFERENCE_NUM_THREADS from ``triton.intra_op_threads``) plus ENABLE_BATCH_PADDING=YES when batching (the
backend fixes the batch at max_batch_size with ov::set_batch and rejects smaller batches without it; the twin
pads the same way) and RESHAPE_IO_LAYERS=YES when an input has a named dynamic dim (the backend takes -1 dims
only through reshaping).

Caveat (recorded in the manifest): the backend can force bf16 (HINT_BF16) but has no switch for f32, and
OpenVINO's CPU plugin defaults to bf16 on CPUs with native bf16 -- there Triton runs the f32 IR in bf16.
The embedded runner and the verification here set the precision explicitly.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VariantFailed
from generator.serve.runtimes import openvino_available, openvino_runner, openvino_supports
from ..spec import ModelSpec, Tolerance
from ..spec.options import OpenvinoOptions
from .base import BuildContext, Skip, Variant
from .derived import optimized_fp32

OPTIONS = tuple(OpenvinoOptions.__dataclass_fields__)  # the runtime's own (openvino-int8 adds NNCF's)


def ov_options(model: ModelSpec, key: str, options: dict) -> dict:
    """The OpenVINO options (typed and checked with the spec, generator/spec/options.py)."""
    o = options if isinstance(options, OpenvinoOptions) else OpenvinoOptions(**dict(options))
    return {"precision": o.inference_precision, "hint": o.performance_hint, "streams": o.num_streams}


def check_runnable(model: ModelSpec, key: str, options: dict) -> dict:
    why = openvino_available()
    if why:
        raise Skip(why)
    opts = ov_options(model, key, options)
    if not openvino_supports(opts["precision"]):
        raise Skip(f"inference_precision {opts['precision']}: this CPU has no native {opts['precision']} "
                   "(needs avx512_bf16 or AMX); use f32")
    return opts


def convert(src: Path, out_xml: Path) -> dict:
    import openvino as ov

    try:
        model = ov.convert_model(str(src))
    except Exception as e:
        raise VariantFailed(f"openvino: convert_model failed: {type(e).__name__}: {str(e).strip().splitlines()[0][:200]}")
    ov.save_model(model, str(out_xml), compress_to_fp16=False)
    return {"ops": len(model.get_ops()), "openvino": ov.__version__}


def plugin_default_note(precision: str) -> dict:
    import openvino as ov

    default = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")).lower()
    note = {"cpu_default_precision": default}
    if precision == "f32" and "f32" not in default and "float32" not in default:
        note["triton_precision_note"] = (f"Triton's openvino backend cannot force f32 and this CPU's default is "
                                         f"{default}: served there, the model runs in {default}")
    return note


def build(ctx: BuildContext) -> None:
    opts = check_runnable(ctx.model, VARIANT.key, ctx.options)
    src = optimized_fp32(ctx)
    ctx.info.update(convert(src, ctx.artifact_dir / "model.xml"))
    ctx.info.update(plugin_default_note(opts["precision"]))
    ctx.info["inference_precision"] = opts["precision"]
    ctx.info["compute_precision"] = "bf16" if opts["precision"] == "bf16" else "fp32"
    ctx.reproduce.append(
        f"python -c \"import openvino as ov; ov.save_model(ov.convert_model('{src}'), 'model.xml', compress_to_fp16=False)\""
    )


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    opts = ov_options(model, "openvino", options)
    return openvino_runner(artifact_dir / "model.xml", [t.name for t in model.inputs], [t.name for t in model.outputs],
                           precision=opts["precision"])


def parameters(model: ModelSpec, options: dict, key: str = "openvino") -> dict:
    """Config ``parameters``: the Triton openvino backend's keys (the embedded twin reads the same keys)."""
    opts = ov_options(model, key, options)
    params = {"PERFORMANCE_HINT": opts["hint"]}
    if opts["streams"] is not None:
        params["NUM_STREAMS"] = str(opts["streams"]).upper()
    if model.triton.intra_op_threads:
        params["INFERENCE_NUM_THREADS"] = str(model.triton.intra_op_threads)
    if opts["precision"] == "bf16":
        params["HINT_BF16"] = "YES"
    if model.max_batch_size > 0:
        # the backend fixes the batch at max_batch_size (ov::set_batch) and refuses smaller batches without padding
        params["ENABLE_BATCH_PADDING"] = "YES"
    if any(isinstance(d, str) for t in model.inputs for d in t.shape):
        # named (dynamic) dims render as -1, which the backend takes only through reshaping the IO layers
        params["RESHAPE_IO_LAYERS"] = "YES"
    return params


def tolerance(model: ModelSpec, options: dict) -> Tolerance:
    if ov_options(model, "openvino", options)["precision"] == "bf16":
        # bf16 keeps 8 bits of mantissa: ~1e-2 relative per op; judged by cosine (and the task metrics)
        return Tolerance(min_cosine=0.995, min_top1=None, min_mean_cosine=0.995)
    return Tolerance(atol=1e-3, rtol=1e-3, min_cosine=0.9999)


VARIANT = Variant(
    key="openvino",
    backend="openvino",
    precision="fp32",
    tolerance=Tolerance(atol=1e-3, rtol=1e-3, min_cosine=0.9999),
    default_tolerance=tolerance,
    build=build,
    runner=runner,
    options=OpenvinoOptions,
    description="OpenVINO IR (fp32 weights; f32 or bf16 inference) for the openvino backend",
    extra_parameters=parameters,
)
