"""Variant ``openvino-int8``: OpenVINO IR quantized to INT8 by NNCF post-training quantization.

Stages: the optimised fp32 ONNX -> ``openvino.convert_model`` -> ``nncf.quantize`` on the calibration
samples -> ``openvino.save_model``. Served by Triton's openvino backend like the ``openvino`` variant
(same parameters). Options: those of ``openvino`` (inference_precision for the ops left in float,
performance_hint, num_streams) and
- ``preset``: performance (default; symmetric activations) | mixed (asymmetric activations);
- ``model_type``: transformer | generic -- default transformer when the graph has a Softmax (NNCF then
  keeps attention-sensitive ops in float and applies SmoothQuant);
- ``subset_size``: calibration samples used (default: all of ``calibration``, at most 300);
- ``fast_bias_correction``: default true;
- ``ignored_nodes`` / ``ignored_types``: kept in float (NNCF ``IgnoredScope``).
Skipped when nncf or openvino is not importable. A failing gate is reported like any other variant.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import UserError, VariantFailed
from ..spec import ModelSpec, Tolerance
from .base import BuildContext, Skip, Variant
from .derived import optimized_fp32
from .onnx_int8 import int8_tolerance
from .openvino_ir import OPTIONS, check_runnable, ov_options, parameters, plugin_default_note
from .openvino_ir import runner as ov_runner


def _nncf_options(ctx: BuildContext, src: Path) -> dict:
    where = f"{ctx.model.where}.variants.{VARIANT.key}.options"
    o = ctx.options
    preset = str(o.get("preset", "performance")).lower()
    if preset not in ("performance", "mixed"):
        raise UserError(f"{where}.preset: '{preset}' is not performance or mixed")
    from ..quantize import graph_nodes

    nodes = graph_nodes(src)
    mtype = str(o.get("model_type", "transformer" if any(op == "Softmax" for _, op in nodes) else "generic")).lower()
    if mtype not in ("transformer", "generic"):
        raise UserError(f"{where}.model_type: '{mtype}' is not transformer or generic")
    subset = o.get("subset_size", 300)
    if isinstance(subset, bool) or not isinstance(subset, int) or subset < 1:
        raise UserError(f"{where}.subset_size: expected a positive integer, got {subset!r}")
    fbc = o.get("fast_bias_correction", True)
    if not isinstance(fbc, bool):
        raise UserError(f"{where}.fast_bias_correction: expected true or false, got {fbc!r}")
    lists = {}
    for key in ("ignored_nodes", "ignored_types"):
        v = o.get(key, [])
        if not isinstance(v, list) or not all(isinstance(x, str) for x in v):
            raise UserError(f"{where}.{key}: expected a list of names")
        lists[key] = v
    return {"preset": preset, "model_type": mtype, "subset_size": subset, "fast_bias_correction": fbc, **lists}


def build(ctx: BuildContext) -> None:
    opts = check_runnable(ctx.model, VARIANT.key, ctx.options)
    try:
        import nncf
    except Exception as e:
        raise Skip(f"nncf is not importable ({type(e).__name__}); pip install nncf (see requirements.txt)")
    import openvino as ov

    src = optimized_fp32(ctx)
    n = _nncf_options(ctx, src)
    samples = ctx.calibration()
    model = ov.convert_model(str(src))
    in_names = [t.name for t in ctx.model.inputs]
    dataset = nncf.Dataset(samples, lambda feeds: {k: feeds[k] for k in in_names})
    kwargs = dict(
        preset=nncf.QuantizationPreset.PERFORMANCE if n["preset"] == "performance" else nncf.QuantizationPreset.MIXED,
        subset_size=min(n["subset_size"], len(samples)),
        fast_bias_correction=n["fast_bias_correction"],
    )
    if n["model_type"] == "transformer":
        kwargs["model_type"] = nncf.ModelType.TRANSFORMER
    if n["ignored_nodes"] or n["ignored_types"]:
        kwargs["ignored_scope"] = nncf.IgnoredScope(names=n["ignored_nodes"], types=n["ignored_types"])
    try:
        quantized = nncf.quantize(model, dataset, **kwargs)
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise VariantFailed(f"openvino-int8: nncf.quantize failed: {type(e).__name__}: {first}; "
                            "keep the named node/op in float with options.ignored_nodes / ignored_types")
    out = ctx.artifact_dir / "model.xml"
    ov.save_model(quantized, str(out), compress_to_fp16=False)
    fq = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    ctx.info.update({"fake_quantize_ops": fq, "calibration_samples": kwargs["subset_size"], "openvino": ov.__version__,
                     "nncf": nncf.__version__, "inference_precision": opts["precision"], **n})
    ctx.info.update(plugin_default_note(opts["precision"]))
    ctx.reproduce.append(
        "python -c \"import nncf, openvino as ov; "
        f"m = nncf.quantize(ov.convert_model('{src}'), nncf.Dataset(YOUR_SAMPLES), preset=nncf.QuantizationPreset."
        f"{n['preset'].upper()}{', model_type=nncf.ModelType.TRANSFORMER' if n['model_type'] == 'transformer' else ''}, "
        f"subset_size={kwargs['subset_size']}); ov.save_model(m, 'model.xml', compress_to_fp16=False)\""
    )


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    ov_options(model, VARIANT.key, {k: v for k, v in options.items() if k in OPTIONS})
    return ov_runner(artifact_dir, model, {k: v for k, v in options.items() if k in OPTIONS})


VARIANT = Variant(
    key="openvino-int8",
    filename="model.xml",
    platform=None,
    backend="openvino",
    precision="int8",
    devices=("cpu",),
    tolerance=Tolerance(min_cosine=0.98, min_mean_cosine=0.98),
    default_tolerance=int8_tolerance,
    template="openvino.pbtxt.j2",
    build=build,
    runner=runner,
    runtime="openvino",
    options=OPTIONS + ("preset", "model_type", "subset_size", "fast_bias_correction", "ignored_nodes", "ignored_types"),
    description="OpenVINO IR quantized to INT8 with NNCF post-training quantization",
    extra_parameters=lambda model, options: parameters(model, {k: v for k, v in options.items() if k in OPTIONS},
                                                       key="openvino-int8"),
)
