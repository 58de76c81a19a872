"""Variant ``onnx-int8``: static INT8 (QDQ) ONNX, calibrated, for Triton's onnxruntime backend (CPU).

Stages: the optimised fp32 graph -> ``quantize_static`` (QDQ; activations calibrated on ``calibration``
samples, int8 symmetric weights, per-channel by default; Relu/Clip folded into the conv output ranges) ->
the accuracy gate. Options: ``per_channel`` (default true), ``calibration_method`` (minmax | entropy |
percentile; default the spec's ``calibration.method``), ``op_types`` (default MatMul, Gemm, Conv, Relu,
Clip), ``nodes_to_exclude``, ``reduce_range`` (default false), ``weight_type`` (int8 | uint8; default per CPU: uint8,
i.e. U8U8, on x86 without VNNI where U8S8 can saturate -- generator/isa.py), ``activation_type`` (uint8
asymmetric | int8 symmetric), ``search`` (default
true; ``fallback`` is its old name), ``search_budget_s`` (default 600).

Recipe search: when the first recipe fails the gate, a small bounded set is tried, all full INT8 first (the
other calibration methods, per-channel, the other activation symmetry, and without VNNI reduce_range and
U8U8), then the best of those with its worst nodes kept in fp32 -- 1, 2, 4... up to a quarter of the
quantizable nodes, ranked by a per-node comparison (ONNX Runtime's qdq_loss_debug: SQNR of each node's
quantized inputs and weights on the calibration samples). The first recipe that passes is kept (the full-INT8
ones are equally fast, exclusions only slow it down); every attempt (recipe, metrics, seconds) goes to the
manifest's ``info.attempts`` and build.log. Nothing that fails the gate is shipped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from .. import isa
from .. import quantize as q
from ..errors import VariantFailed
from ..export import copy_onnx, data_file
from ..inputs import torch_forward
from ..runtimes import onnx_artifact_runner, ort_runner
from ..spec import ModelSpec, Tolerance
from ..spec.options import OnnxInt8Options
from ..verify import gate_metrics, verify
from .base import BuildContext, Variant
from .derived import optimized_fp32


def build(ctx: BuildContext) -> None:
    opts = q.options(ctx, q.STATIC_OPS, static=True)
    src = optimized_fp32(ctx)
    nodes = q.graph_nodes(src)
    q.check_selection(nodes, opts["op_types"], opts["exclude"], f"{ctx.model.where}.variants.{ctx.variant.name}.options")
    samples = ctx.calibration()
    out = ctx.artifact_dir / "model.onnx"
    cpu = isa.summary()
    ctx.info["isa"] = cpu
    first = q.Recipe(method=opts["method"], per_channel=opts["per_channel"], activation_type=opts["activation_type"],
                     reduce_range=opts["reduce_range"], weight_type=opts["weight_type"], exclude=tuple(opts["exclude"]))

    def quantize(r: q.Recipe, dest: Path = out) -> dict:
        return q.quantize_static_onnx(
            src, dest, samples, op_types=opts["op_types"], per_channel=r.per_channel, method=r.method,
            reduce_range=r.reduce_range, activation_type=r.activation_type, weight_type=r.weight_type,
            exclude=r.exclude, variant=VARIANT.key)

    if not opts["search"]:
        ctx.info.update(quantize(first))
        ctx.reproduce.append(_command(src, opts["op_types"], first))
        return
    tol = VARIANT.tolerance_for(ctx.model, ctx.variant)
    module = None

    def reference(feeds, point):
        nonlocal module
        module = module or ctx.torch_module()
        return torch_forward(module, ctx.model, feeds, point)

    ref = ctx.reference or reference
    start = time.perf_counter()
    budget = opts["search_budget_s"]
    attempts: list[dict] = []
    trial = ctx.work_dir / "trial.onnx"

    def attempt(r: q.Recipe) -> tuple[bool, float]:
        t = time.perf_counter()
        info = quantize(r, trial)
        v = verify(ort_runner(trial, [o.name for o in ctx.model.outputs], level="all"), ref, ctx.model, tol)
        rec = {"recipe": r.label(), **r.as_dict(), "passed": v.passed, "metrics": gate_metrics(v),
               "score": round(_score(v), 4), "seconds": round(time.perf_counter() - t, 2)}
        if not v.passed:
            rec["failed"] = v.error or "; ".join(v.failed)[:300]
        attempts.append(rec)
        ctx.log(f"recipe {len(attempts)} [{r.label()}]: {'passed' if v.passed else 'failed'} "
                f"({v.summary}) in {rec['seconds']:.1f}s")
        if v.passed:  # re-saved under the artifact's name: external data (over 2 GB) follows as model.onnx.data
            copy_onnx(trial, out)
            ctx.info.update(info)
        return v.passed, _score(v)

    def over_budget() -> bool:
        return time.perf_counter() - start > budget

    chosen = None
    scores: dict[q.Recipe, float] = {}
    for r in [first] + q.recipe_variations(first, isa.has_vnni(cpu["class"])):
        if chosen or (attempts and over_budget()):
            break
        ok, scores[r] = attempt(r)
        chosen = r if ok else None
    if not chosen and not over_budget():
        best = max(scores, key=scores.get)
        quantize(best, trial)
        ranked = q.node_errors(src, trial, samples[:8], opts["op_types"], exclude=best.exclude)
        ctx.info["node_errors_db"] = [[n, round(db, 1)] for n, db in ranked[:10]]
        ctx.log("worst nodes (SQNR dB of their quantized inputs): "
                + ", ".join(f"{n} {db:.1f}" for n, db in ranked[:5]))
        for k in q.exclusion_steps(len(ranked)):
            if chosen or over_budget():
                break
            r = dataclasses.replace(best, exclude=best.exclude + tuple(n for n, _ in ranked[:k]))
            ok, _ = attempt(r)
            chosen = r if ok else None
    ctx.info["attempts"] = attempts
    if chosen is None and scores:  # --keep-failed writes the closest one (marked failed)
        quantize(max(scores, key=scores.get))
    ctx.info["search_s"] = round(time.perf_counter() - start, 1)
    if chosen is None:
        why = "the search budget (options.search_budget_s) ran out" if over_budget() else "no recipe passed"
        raise VariantFailed(f"{VARIANT.key}: {len(attempts)} recipes tried in {ctx.info['search_s']}s, {why}; best: "
                            f"{max(attempts, key=lambda a: a.get('score', 0))['recipe'] if attempts else '-'} "
                            f"({attempts[-1]['failed'] if attempts else ''}); see build.log and manifest info.attempts")
    trial.unlink(missing_ok=True)
    data_file(trial).unlink(missing_ok=True)
    ctx.info["recipe"] = chosen.label()
    ctx.reproduce.append(_command(src, opts["op_types"], chosen))
    if len(attempts) > 1:
        ctx.reproduce.append(f"# recipe search: {len(attempts)} attempts, the first passing one above (see build.log)")


def _score(v) -> float:
    """How close a failed attempt came: the task metric when there is one, else the worst cosine."""
    if v.task:
        return v.task.get("top1", v.task.get("mean_cosine", 0.0)) or 0.0
    return v.min_cosine


def _command(src: Path, op_types, r: q.Recipe) -> str:
    return (
        "python -c \"from onnxruntime.quantization import *; "
        f"quantize_static('{src}', 'model.onnx', YOUR_CALIBRATION_READER, quant_format=QuantFormat.QDQ, "
        f"op_types_to_quantize={list(op_types)}, per_channel={r.per_channel}, "
        f"reduce_range={r.reduce_range}, activation_type=QuantType.{q.ACTIVATION_TYPES[r.activation_type]}, "
        f"weight_type=QuantType.{q.ACTIVATION_TYPES[r.weight_type]}, nodes_to_exclude={list(r.exclude)}, "
        f"calibrate_method=CalibrationMethod.{q.METHODS[r.method]}, "
        f"extra_options={{'ActivationSymmetric': {r.activation_type == 'int8'}, "
        f"'WeightSymmetric': {r.weight_type == 'int8'}}})\""
    )


runner = onnx_artifact_runner("all")


# The INT8 gate, judged on the task (justified in README "INT8"; measured on EfficientNet-Lite0 with ImageNet
# weights on 64 crops of real photos and all-MiniLM-L6-v2 on 60 real sentences):
# - classification with real data: the mean per-sample logit cosine >= 0.95 gates (good PTQ recipes 0.97-0.98,
#   7-bit weights (reduce_range) 0.92, a broken one -- conv outputs quantized before ReLU6 -- 0.77); top-1
#   agreement >= 0.60 and top-5 overlap >= 0.70 catch a wrong head or permuted classes (good 0.72-0.83 /
#   0.82-0.91, broken 0.39 / 0.47): top-1 agreement on near-tied logits measures the data's margins more than
#   the model (median fp32 confidence on these crops: 0.2-0.3);
# - embedding: mean cosine >= 0.98 (ORT after the search 0.981, NNCF 0.995, dynamic 0.960, symmetric 0.850);
# - random inputs are far from what a calibrated model saw, so their cosine only catches catastrophes (>= 0.90
#   with real data; good and broken recipes both measured 0.96-0.98 there); with random calibration data the
#   same distribution is used for both and cosine >= 0.98 gates.
def int8_tolerance(model: ModelSpec, options: dict) -> Tolerance:
    real = model.calibration.data is not None or model.verify.data is not None
    if real:
        mean_cos = 0.98 if model.verify.task == "embedding" else 0.95
        return Tolerance(min_cosine=0.90, min_top1=0.60, min_top5=0.70, min_mean_cosine=mean_cos)
    return Tolerance(min_cosine=0.98, min_mean_cosine=0.98 if model.verify.task == "embedding" else None)


VARIANT = Variant(
    key="onnx-int8",
    backend="onnxruntime",
    precision="int8",
    devices=("cpu",),
    tolerance=Tolerance(min_cosine=0.98, min_mean_cosine=0.98),
    default_tolerance=int8_tolerance,
    build=build,
    runner=runner,
    options=OnnxInt8Options,
    description="static INT8 QDQ ONNX (ONNX Runtime, calibrated), with a recipe search behind the gate",
)
