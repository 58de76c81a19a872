"""Variant ``openvino-int8``: OpenVINO IR quantized to INT8 by NNCF post-training quantization.

Stages: the fp32 model of ``openvino`` (options.frontend: the PyTorch module, else the ONNX) -> ``nncf.quantize`` on the calibration
samples -> ``openvino.save_model``. Served by Triton's openvino backend like the ``openvino`` variant
(same parameters). Options: those of ``openvino`` (inference_precision for the ops left in float,
performance_hint, num_streams) and
- ``preset``: performance (default; symmetric activations) | mixed (asymmetric activations);
- ``model_type``: transformer | generic -- default transformer when the graph has a Softmax (NNCF then
  keeps attention-sensitive ops in float and applies SmoothQuant);
- ``subset_size``: calibration samples used (default: all of ``calibration``, at most 300);
- ``fast_bias_correction``: default true;
- ``ignored_nodes`` / ``ignored_types``: kept in float (NNCF ``IgnoredScope``).
- ``search`` (default true) / ``search_budget_s`` (default 600): the full-INT8 recipes (the first, the other
  activation symmetry (preset), full bias correction) are tried and the fastest passing one is kept (timed
  in-process on one fixed batch); when none passes, NNCF's accuracy-aware quantization driven by the gate's own
  metric (generator/stages/gate.py: labelled accuracy, confident agreement, else per-sample cosine to PyTorch) keeps
  the ops that hurt it most in float. Every attempt goes to the manifest's ``info.attempts`` and build.log.
Skipped when nncf or openvino is not importable. Nothing that fails the gate is shipped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from generator.tables import isa
from generator.stages import recipe_search as rs
from ..errors import UserError, VariantFailed
from generator.loading.inputs import verification_points
from generator.stages.verify import gate_metrics, verify
from ..spec import ModelSpec, Tolerance
from ..spec.options import OpenvinoInt8Options
from .base import BuildContext, Skip, Variant
from .onnx_int8 import int8_tolerance
from .openvino_ir import OPTIONS, batch_layouts, check_runnable, fp32_model, ov_options, parameters, plugin_default_note
from .openvino_ir import runner as ov_runner


ATTENTION_OPS = ("Softmax", "ScaledDotProductAttention")  # from ONNX / from the PyTorch frontend


def _nncf_options(ctx: BuildContext, base) -> dict:
    o = ctx.options  # typed and checked with the spec (generator/spec/options.py)
    mtype = o.model_type
    if mtype is None:
        mtype = "transformer" if any(op.get_type_name() in ATTENTION_OPS for op in base.get_ops()) else "generic"
    return {"preset": o.preset, "model_type": mtype, "subset_size": o.subset_size,
            "fast_bias_correction": o.fast_bias_correction, "ignored_nodes": list(o.ignored_nodes),
            "ignored_types": list(o.ignored_types)}


def build(ctx: BuildContext) -> None:
    opts = check_runnable(ctx.model, VARIANT.key, ctx.options)
    try:
        import nncf
    except Exception as e:
        raise Skip(f"nncf is not importable ({type(e).__name__}); pip install nncf (see requirements.txt)")
    import openvino as ov

    base, made_by = fp32_model(ctx)
    n = _nncf_options(ctx, base)
    samples = ctx.calibration()
    ctx.info["isa"] = isa.summary()
    caps = isa.openvino_capabilities()
    if caps:
        ctx.info["isa"]["openvino"] = caps
    in_names = [t.name for t in ctx.model.inputs]
    dataset = nncf.Dataset(samples, lambda feeds: {k: feeds[k] for k in in_names})
    subset = min(n["subset_size"], len(samples))

    def kwargs_for(r: dict) -> dict:
        kw = dict(preset=nncf.QuantizationPreset.PERFORMANCE if r["preset"] == "performance" else nncf.QuantizationPreset.MIXED,
                  subset_size=subset, fast_bias_correction=r["fast_bias_correction"])
        if r["model_type"] == "transformer":
            kw["model_type"] = nncf.ModelType.TRANSFORMER
        if r["ignored_nodes"] or r["ignored_types"]:
            kw["ignored_scope"] = nncf.IgnoredScope(names=r["ignored_nodes"], types=r["ignored_types"])
        return kw

    def quantize(r: dict, accuracy_control: bool = False):
        try:
            if accuracy_control:
                return _with_accuracy_control(ctx, nncf, base.clone(), dataset, kwargs_for(r), tol)
            return nncf.quantize(base.clone(), dataset, **kwargs_for(r))
        except Exception as e:
            first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise VariantFailed(f"openvino-int8: nncf.quantize failed: {type(e).__name__}: {first}; "
                                "keep the named node/op in float with options.ignored_nodes / ignored_types")

    out = ctx.artifact_dir / "model.xml"
    search, budget = ctx.options.search, ctx.options.search_budget_s
    tol = VARIANT.tolerance_for(ctx.model, ctx.variant)
    search = search and ctx.reference is not None  # the search verifies against PyTorch
    chosen, quantized = n, None
    if not search:
        quantized = quantize(n)
    else:
        start = time.perf_counter()
        trial = ctx.work_dir / "trial"
        trial.mkdir(exist_ok=True)
        attempts: list[dict] = []
        passing: list = []  # ((index into recipes, quantized model), attempt record)
        recipes = [(n, False)] + [(r, False) for r in _variations(n)] + [(n, True)]
        for i, (r, ac) in enumerate(recipes):
            if (attempts and time.perf_counter() - start > budget) or (ac and passing):
                break  # accuracy control keeps ops in float: only when no full-INT8 recipe passed
            t = time.perf_counter()
            model = quantize(r, accuracy_control=ac)
            ov.save_model(model, str(trial / "model.xml"), compress_to_fp16=False)
            run = runner(trial, ctx.model, ctx.variant.options)
            v = verify(run, ctx.reference, ctx.model, tol)
            speed = rs.time_batch(run, ctx.model) if v.passed else None
            label = _label(r) + (" + accuracy control" if ac else "")
            attempts.append({"recipe": label, **{k: r[k] for k in ("preset", "model_type", "fast_bias_correction")},
                             "accuracy_control": ac, "passed": v.passed, "metrics": gate_metrics(v),
                             "seconds": round(time.perf_counter() - t, 2), **({"speed": speed} if speed else {}),
                             **({} if v.passed else {"failed": (v.error or "; ".join(v.failed))[:300]})})
            ctx.log(rs.attempt_line(len(attempts), label, v, attempts[-1]["seconds"], speed))
            if v.passed:
                passing.append(((i, model), attempts[-1]))
        ctx.info["attempts"] = attempts
        ctx.info["search_s"] = round(time.perf_counter() - start, 1)
        if not passing:
            raise VariantFailed(f"{VARIANT.key}: {len(attempts)} recipes tried in {ctx.info['search_s']}s, none "
                                f"passed the gate ({attempts[-1].get('failed', '')}); see build.log and manifest "
                                "info.attempts")
        i, quantized = rs.fastest(passing)
        chosen = recipes[i][0]
        ctx.info["recipe"] = next(a["recipe"] for (j, _), a in passing if j == i)
        ctx.log(f"kept [{ctx.info['recipe']}]: the fastest of {len(passing)} passing recipe(s)")
    ov.save_model(batch_layouts(quantized, ctx.model), str(out), compress_to_fp16=False)
    fq = sum(1 for op in quantized.get_ops() if op.get_type_name() == "FakeQuantize")
    ctx.info.update({"fake_quantize_ops": fq, "calibration_samples": subset, "openvino": ov.__version__,
                     "nncf": nncf.__version__, "inference_precision": opts["precision"], **chosen})
    ctx.info.update(plugin_default_note(opts["precision"]))
    ctx.reproduce.append(
        "python -c \"import nncf, openvino as ov; "
        f"m = nncf.quantize({made_by}, nncf.Dataset(YOUR_SAMPLES), preset=nncf.QuantizationPreset."
        f"{chosen['preset'].upper()}{', model_type=nncf.ModelType.TRANSFORMER' if chosen['model_type'] == 'transformer' else ''}, "
        f"subset_size={subset}, fast_bias_correction={chosen['fast_bias_correction']}); "
        "ov.save_model(m, 'model.xml', compress_to_fp16=False)\""
    )


def _label(r: dict) -> str:
    return (f"{r['preset']} ({'symmetric' if r['preset'] == 'performance' else 'asymmetric'} activations), "
            f"{r['model_type']}, {'fast' if r['fast_bias_correction'] else 'full'} bias correction")


def _variations(first: dict) -> list[dict]:
    """After ``first``: the other activation symmetry (NNCF preset), then full bias correction."""
    other = dict(first, preset="mixed" if first["preset"] == "performance" else "performance")
    out = [other]
    if first["fast_bias_correction"]:
        out.append(dict(other, fast_bias_correction=False))
    return out


def _with_accuracy_control(ctx: BuildContext, nncf, model, dataset, kwargs: dict, tol):
    """NNCF's accuracy-aware quantization: ranks the quantized ops by their effect on the gate's own metric
    (generator/stages/gate.py) and reverts the worst to float until the drop is within the gate's (at most 8 reverts):
    with labels top-1 accuracy (drop <= (1 - accuracy_ratio) x fp32's), for classification without labels top-1
    agreement with fp32 on the confident samples (drop <= 1 - min_confident_agreement), else the mean per-sample
    cosine to PyTorch (drop <= 1 - min_mean_cosine)."""
    import numpy as np

    from generator.stages.gate import CONFIDENCE, probabilities
    from generator.stages.verify import DEFAULT_TASK_SAMPLES, _verification_set

    vs = _verification_set(ctx.model, tol.samples or DEFAULT_TASK_SAMPLES, tol.data, tol)
    first = ctx.model.outputs[0].name
    point = next(iter(verification_points(ctx.model)))
    p = dataclasses.replace(point, batch=1 if ctx.model.max_batch_size > 0 else 0)
    refs = [np.asarray(ctx.reference(feeds, p)[first], np.float64).ravel() for feeds in vs.samples]
    labels = vs.labels if tol.task == "classification" else None
    items = [(f, r, None if labels is None else int(labels[i])) for i, (f, r) in enumerate(zip(vs.samples, refs))]
    if labels is not None:
        metric = "accuracy"
        fp32 = float(np.mean([np.argmax(r) == lab for _, r, lab in items])) if items else 0.0
        max_drop = (1.0 - (tol.accuracy_ratio or 0.99)) * fp32
    elif tol.task == "classification" and vs.source != "random":
        metric = "agreement"
        conf = tol.confidence if tol.confidence is not None else CONFIDENCE
        items = [it for it in items if probabilities(it[1][None])[0].max() >= conf] or items
        max_drop = 1.0 - (tol.min_confident_agreement or 0.97)
    else:
        metric = "cosine"
        max_drop = max(0.0, 1.0 - (tol.min_mean_cosine or 0.98)) * 0.8
    in_names = [t.name for t in ctx.model.inputs]

    def validate(compiled, data):
        per = []
        for feeds, ref, label in data:
            got = np.asarray(next(iter(compiled({k: feeds[k] for k in in_names}).values())), np.float64).ravel()
            if metric == "accuracy":
                per.append(float(np.argmax(got) == label))
            elif metric == "agreement":
                per.append(float(np.argmax(got) == np.argmax(ref)))
            else:
                nr, ng = np.linalg.norm(ref), np.linalg.norm(got)  # one of them all zeros: 0, not a perfect 1
                per.append(float(ref @ got / (nr * ng)) if nr > 0 and ng > 0 else float(nr == ng))
        return float(np.mean(per)), per

    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    val = nncf.Dataset(items, lambda item: {k: item[0][k] for k in in_names})
    return nncf.quantize_with_accuracy_control(
        model, dataset, val, validate, max_drop=max_drop,
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(max_num_iterations=8), **kwargs)


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    ov_options(model, VARIANT.key, {k: v for k, v in options.items() if k in OPTIONS})
    return ov_runner(artifact_dir, model, {k: v for k, v in options.items() if k in OPTIONS})


VARIANT = Variant(
    key="openvino-int8",
    backend="openvino",
    precision="int8",
    tolerance=Tolerance(min_cosine=0.98, min_mean_cosine=0.98),
    default_tolerance=int8_tolerance,
    build=build,
    runner=runner,
    options=OpenvinoInt8Options,
    description="OpenVINO IR quantized to INT8 with NNCF post-training quantization",
    extra_parameters=lambda model, options: parameters(model, {k: v for k, v in options.items() if k in OPTIONS},
                                                       key="openvino-int8"),
    revision=3,  # 3: dead rows pruned; 2: batch layouts on a batching spec's IR; 1: frontend auto (PyTorch module)
)
