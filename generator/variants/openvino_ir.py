"""Variant ``openvino``: OpenVINO IR (``model.xml`` + ``model.bin``, fp32 weights) for Triton's openvino
backend (CPU only).

Stages: the PyTorch module (or the optimised fp32 ONNX) -> ``openvino.convert_model`` ->
``openvino.save_model(compress_to_fp16=False)``.
Options:
- ``frontend``: auto (default) | pytorch | onnx -- what OpenVINO converts. From the module, attention stays one
  ``ScaledDotProductAttention`` op, which the CPU plugin fuses (with INT8, one int8 MHA kernel); from ONNX it is
  MatMul/Softmax/MatMul. auto takes the module when it converts and answers like PyTorch, else the ONNX (the
  reason goes to build.log and the manifest's ``info.frontend_fallback``);
- ``inference_precision``: f32 (default) | bf16 | auto -- bf16 needs avx512_bf16 or AMX (Skip elsewhere); auto
  renders no HINT_BF16 and runs as the native backend does, in the CPU plugin's default (bf16 on CPUs with native
  bf16, f32 elsewhere): the build machine's default is what is verified, and the manifest records it;
- ``performance_hint``: LATENCY (default) | THROUGHPUT -- THROUGHPUT pays off only with concurrent requests;
- ``num_streams``: an integer, or AUTO.
They become the backend's config ``parameters`` (PERFORMANCE_HINT, NUM_STREAMS, HINT_BF16,
INFERENCE_NUM_THREADS from ``triton.intra_op_threads``) plus ENABLE_BATCH_PADDING=YES when batching (the
backend fixes the batch at max_batch_size with ov::set_batch and rejects smaller batches without it; the twin
pads the same way) and RESHAPE_IO_LAYERS=YES when an input has a named dynamic dim (the backend takes -1 dims
only through reshaping).

Caveat (recorded in the manifest): the backend can force bf16 (HINT_BF16) but has no switch for f32, and
OpenVINO's CPU plugin defaults to bf16 on CPUs with native bf16 -- there Triton runs the f32 IR in bf16.
The embedded runner and the verification here set the precision explicitly, except for ``auto``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from ..errors import VariantFailed
from generator.loading.inputs import make_inputs
from generator.stages.export import example_point, io_adapter
from generator.serve.runtimes import openvino_available, openvino_resolve, openvino_runner, openvino_supports
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


def _first(e: BaseException) -> str:
    text = str(e).strip()
    return f"{type(e).__name__}: {text.splitlines()[0][:200]}" if text else type(e).__name__


def _from_onnx(src: Path):
    import openvino as ov

    try:
        return ov.convert_model(str(src))
    except Exception as e:  # the converter's own error, reported in one line
        raise VariantFailed(f"openvino: convert_model failed on the ONNX: {_first(e)}")


def _from_pytorch(ctx: BuildContext):
    """``ov.convert_model`` on the module behind the spec's I/O (``io_adapter``): inputs by position with the
    batch and named dims dynamic (-1), tensors named as the spec names them (the backend matches config names)."""
    import numpy as np
    import openvino as ov
    import torch

    model = ctx.model
    feeds = make_inputs(model, example_point(model), seed=3)
    args = tuple(torch.from_numpy(feeds[t.name]) for t in model.inputs)
    lead = [-1] if model.max_batch_size > 0 else []
    shapes = [(ov.PartialShape(lead + [-1 if isinstance(d, str) else int(d) for d in t.shape]),
               ov.Type(np.dtype(feeds[t.name].dtype))) for t in model.inputs]
    adapter = io_adapter(ctx.torch_module(), model)
    try:
        with torch.no_grad():
            converted = ov.convert_model(adapter, example_input=args, input=shapes)
    except Exception as e:  # the frontend's own error (an op it does not know, a trace it cannot take)
        raise VariantFailed(f"openvino: the PyTorch frontend failed: {_first(e)}")
    if len(converted.outputs) != len(model.outputs):
        raise VariantFailed(f"openvino: the PyTorch frontend gave {len(converted.outputs)} outputs, the spec declares "
                            f"{len(model.outputs)}")
    for port, t in zip(converted.inputs, model.inputs):
        port.get_tensor().set_names({t.name})
    for port, t in zip(converted.outputs, model.outputs):
        port.get_tensor().set_names({t.name})
    # auto must not trade a working ONNX path for a wrong answer: one forward each, before anything is saved
    with torch.no_grad():
        want = adapter(*args)
    want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
    got = _f32(converted)({t.name: feeds[t.name] for t in model.inputs})
    bad = _mismatch(got, dict(zip((t.name for t in model.outputs), want)), atol=1e-3, rtol=1e-3)
    if bad:
        raise VariantFailed(f"openvino: the PyTorch frontend's model answers unlike PyTorch on {bad}")
    return converted


def _f32(model):
    """``model`` compiled for the CPU in f32 (what the checks before saving compare)."""
    import openvino as ov

    return ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})


def _mismatch(got, want: dict, atol: float, rtol: float) -> str | None:
    """The first output of ``want`` (name -> array) that ``got`` (a compiled model's results) does not match:
    "output 'name' (max |Δ| x)", else None."""
    import numpy as np

    for name, w in want.items():
        g, w = np.asarray(got[name]), np.asarray(w)
        if g.shape != w.shape or not np.allclose(g, w, atol=atol, rtol=rtol):
            worst = float(np.max(np.abs(g - w))) if g.shape == w.shape else f"shape {g.shape} vs {w.shape}"
            return f"output '{name}' (max |Δ| {worst})"
    return None


def fp32_model(ctx: BuildContext):
    """The fp32 ``ov.Model`` both OpenVINO variants start from, per ``options.frontend``, with its dead rows pruned
    (``options.dead_rows``), and the call that made it (for reproduce.sh); the manifest records which frontend
    made it and what the pruning removed."""
    model, made_by = _converted(ctx)
    if ctx.options.dead_rows:
        model = _pruned(ctx, model)
        if "dead_rows" in ctx.info:
            ctx.reproduce.append("# options.dead_rows: the converted model then goes through "
                                 "generator.variants.ov_rows.prune(model) (the ops only one row of reaches an output)")
    return model, made_by


def _pruned(ctx: BuildContext, model):
    """``ov_rows.prune`` on a copy, kept when it removed work and answers as the original (f32: the example point,
    batch 1, the named dims at their minimum); else the original, with the reason in build.log."""
    from .ov_rows import prune

    names = [t.name for t in ctx.model.inputs]
    point = example_point(ctx.model)
    # the first point counts the work per sample (batch 1); the named dims at their minimum are checked too (a
    # reshape that moved the row would show there)
    points = [dataclasses.replace(point, batch=1), point] if point.batch > 1 else [point]
    low = tuple(sorted((k, lo) for k, (lo, _, _) in ctx.model.dims.items()))
    if low != point.dims:
        points.append(dataclasses.replace(point, dims=low))
    feeds = [make_inputs(ctx.model, p, seed=5) for p in points]
    copy = model.clone()
    try:
        got = prune(copy, [feeds[0][n].shape for n in names])
    except Exception as e:  # the pass is an optimisation: a graph it cannot rewrite keeps the original
        ctx.log(f"dead rows: not pruned ({_first(e)})")
        return model
    saved = got["matmul_ops_before"] - got["matmul_ops_after"]
    if not got["rewritten"] or saved <= 0:
        return model
    a, b = _f32(model), _f32(copy)
    for p, f in zip(points, feeds):
        want = a({n: f[n] for n in names})
        bad = _mismatch(b({n: f[n] for n in names}), {t.name: want[t.name] for t in ctx.model.outputs},
                        atol=1e-4, rtol=1e-3)  # f32 sums in another order
        if bad:
            ctx.log(f"dead rows: not pruned ({bad} at {p.label} differs from the original's)")
            return model
    share = saved / got["matmul_ops_before"]
    ctx.info["dead_rows"] = {**got, "matmul_saved": round(share, 4)}
    unit, scale = ("GOP", 1e9) if got["matmul_ops_before"] >= 1e8 else ("MOP", 1e6)
    ctx.log(f"dead rows: {got['rewritten']} ops compute only the row(s) the outputs read: MatMul and attention work "
            f"-{share:.1%} ({saved / scale:.2f} of {got['matmul_ops_before'] / scale:.2f} {unit} per sample)")
    return copy


def _converted(ctx: BuildContext):
    frontend = ctx.options.frontend
    if frontend != "onnx":
        try:
            converted = _from_pytorch(ctx)
            ctx.info["frontend"] = "pytorch"
            dims = ", ".join(f"{t.name}: {['-1'] * (ctx.model.max_batch_size > 0) + [str(d) for d in t.shape]}"
                             for t in ctx.model.inputs)
            return converted, f"ov.convert_model(model, example_input=example_inputs, input=[shapes of {dims}])"
        except VariantFailed as e:
            if frontend == "pytorch":
                raise
            ctx.info["frontend_fallback"] = str(e)
            ctx.log(f"{VARIANT.key}: frontend auto: {e}; converting the ONNX instead")
    src = optimized_fp32(ctx)
    ctx.info["frontend"] = "onnx"
    return _from_onnx(src), f"ov.convert_model('{src}')"


def plugin_default_note(precision: str) -> dict:
    import openvino as ov

    default = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")).lower()
    note = {"cpu_default_precision": default}
    if precision == "auto":
        note["triton_precision_note"] = (f"auto: verified in this CPU's default ({openvino_resolve('auto')}); served "
                                         "on another CPU, the model runs in that CPU's default (bf16 where it has "
                                         "native bf16)")
    elif precision == "f32" and "f32" not in default and "float32" not in default:
        note["triton_precision_note"] = (f"Triton's openvino backend cannot force f32 and this CPU's default is "
                                         f"{default}: served there, the model runs in {default}")
    return note


def batch_layouts(model, spec: ModelSpec):
    """An 'N...' layout on every input and output when the spec batches (returns ``model``): the openvino backend's
    auto-complete reads it (without one, max_batch_size > 0 logs 'model layout ... does not support batching'), and
    the served config keeps max_batch_size > 0 (1 on releases with the padding bug: generator/config/release_config.py).
    An unbatched spec's IR gets none (auto-complete would turn batching on)."""
    if spec.max_batch_size > 0:
        import openvino as ov

        for port in list(model.inputs) + list(model.outputs):
            ov.layout_helpers.set_layout(port, ov.Layout("N..."))
    return model


def build(ctx: BuildContext) -> None:
    opts = check_runnable(ctx.model, VARIANT.key, ctx.options)  # first: a Skip when openvino is not importable
    import openvino as ov

    model, made_by = fp32_model(ctx)
    batch_layouts(model, ctx.model)
    ov.save_model(model, str(ctx.artifact_dir / "model.xml"), compress_to_fp16=False)
    ctx.info.update({"ops": len(model.get_ops()), "openvino": ov.__version__})
    ctx.info.update(plugin_default_note(opts["precision"]))
    ctx.info["inference_precision"] = opts["precision"]
    ctx.info["compute_precision"] = "bf16" if openvino_resolve(opts["precision"]) == "bf16" else "fp32"
    ctx.reproduce.append(f"python -c \"import openvino as ov; ov.save_model({made_by}, 'model.xml', compress_to_fp16=False)\"")


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
    if openvino_resolve(ov_options(model, "openvino", options)["precision"]) == "bf16":
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
    revision=3,  # 3: dead rows pruned; 2: batch layouts on a batching spec's IR; 1: frontend auto (PyTorch module)
)
