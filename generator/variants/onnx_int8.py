"""Variant ``onnx-int8``: static INT8 (QDQ) ONNX, calibrated, for Triton's onnxruntime backend (CPU).

Stages: the optimised fp32 graph -> ``quantize_static`` (QDQ; activations calibrated on ``calibration``
samples, int8 symmetric weights, per-channel by default; Relu/Clip folded into the conv output ranges) ->
the accuracy gate. Options: ``per_channel`` (default true), ``calibration_method`` (minmax | entropy |
percentile; default the spec's ``calibration.method``), ``op_types`` (default MatMul, Gemm, Conv, Relu,
Clip), ``nodes_to_exclude``, ``reduce_range`` (default false), ``weight_type`` (int8 | uint8; default per CPU: uint8,
i.e. U8U8, on x86 without VNNI where U8S8 can saturate -- generator/tables/isa.py), ``activation_type`` (uint8
asymmetric | int8 symmetric), ``search`` (default
true; ``fallback`` is its old name), ``search_budget_s`` (default 600), ``quant_format`` (qdq | qoperator;
default qdq), ``fusion`` (auto | transformer | none; default none; auto: ONNX Runtime's transformer fusions
first when the graph has a Softmax and a LayerNormalization), ``num_heads`` / ``hidden_size`` (for the fusion).

Recipe search: every full-INT8 recipe of a small bounded set is tried (the other calibration methods,
per-channel, the other activation symmetry, and without VNNI reduce_range and U8U8); each that passes the gate
is timed in-process on one fixed batch (median of a few runs) and the fastest passing one is kept. A recipe that
differs from a passing one only in its scales (calibration method, reduce_range) runs the same kernels and is not
tried. Only when none
passes, the closest one is tried with its worst nodes kept in fp32 -- 1, 2, 4... up to a quarter of the
quantizable nodes, ranked by a per-node comparison (ONNX Runtime's qdq_loss_debug: SQNR of each node's
quantized inputs and weights on the calibration samples) -- and the first that passes is kept. Every attempt
(recipe, gate numbers, speed, seconds) goes to the manifest's ``info.attempts`` and build.log; the search stops
at ``search_budget_s``. Nothing that fails the gate is shipped.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from generator.tables import isa
from generator.stages import quantize as q
from generator.stages import recipe_search as rs
from ..errors import VariantFailed
from generator.stages.export import copy_onnx, data_file
from generator.loading.inputs import torch_forward
from generator.serve.runtimes import onnx_artifact_runner, ort_runner
from ..spec import ModelSpec, Tolerance
from ..spec.options import OnnxInt8Options
from generator.stages.verify import gate_metrics, verify
from .base import BuildContext, Variant
from .derived import fused_fp32, optimized_fp32


def build(ctx: BuildContext) -> None:
    opts = q.options(ctx, q.STATIC_OPS, static=True)
    src = fused_fp32(ctx, optimized_fp32(ctx), opts, VARIANT.key)
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
            exclude=r.exclude, variant=VARIANT.key, quant_format=opts["quant_format"])

    if not opts["search"]:
        ctx.info.update(quantize(first))
        ctx.reproduce.append(_command(src, opts["op_types"], first, opts["quant_format"]))
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
    out_names = [o.name for o in ctx.model.outputs]
    best: dict = {}  # the fastest passing attempt so far: {recipe, ms, info}

    def attempt(r: q.Recipe) -> tuple[bool, float]:
        t = time.perf_counter()
        info = quantize(r, trial)
        run = ort_runner(trial, out_names, level="all")
        v = verify(run, ref, ctx.model, tol)
        speed = rs.time_batch(run, ctx.model) if v.passed else None
        rec = {"recipe": r.label(), **r.as_dict(), "passed": v.passed, "metrics": gate_metrics(v),
               "score": round(_score(v), 4), "seconds": round(time.perf_counter() - t, 2)}
        if speed:
            rec["speed"] = speed
        if not v.passed:
            rec["failed"] = v.error or "; ".join(v.failed)[:300]
        attempts.append(rec)
        ctx.log(rs.attempt_line(len(attempts), r.label(), v, rec["seconds"], speed))
        if v.passed and (not best or speed["ms"] < best["ms"]):
            # re-saved under the artifact's name: external data (over 2 GB) follows as model.onnx.data
            copy_onnx(trial, out)
            best.update(recipe=r, ms=speed["ms"], info=info)
        return v.passed, _score(v)

    def over_budget() -> bool:
        return time.perf_counter() - start > budget

    scores: dict[q.Recipe, float] = {}
    passed_kernels: set = set()
    for r in [first] + q.recipe_variations(first, isa.has_vnni(cpu["class"])):  # every full-INT8 recipe
        if attempts and over_budget():
            break
        if r.kernels() in passed_kernels:  # as fast as one that passed already: nothing to gain
            ctx.log(f"recipe [{r.label()}] not tried: the same kernels as a passing one (only its scales differ)")
            continue
        ok, scores[r] = attempt(r)
        if ok:
            passed_kernels.add(r.kernels())
    if not best and not over_budget():  # none passed: keep the worst nodes of the closest one in fp32
        closest = max(scores, key=scores.get)
        quantize(closest, trial)
        ranked = q.node_errors(src, trial, samples[:8], opts["op_types"], exclude=closest.exclude)
        ctx.info["node_errors_db"] = [[n, round(db, 1)] for n, db in ranked[:10]]
        ctx.log("worst nodes (SQNR dB of their quantized inputs): "
                + ", ".join(f"{n} {db:.1f}" for n, db in ranked[:5]))
        for k in q.exclusion_steps(len(ranked)):  # the first that passes keeps the fewest nodes in fp32
            if best or over_budget():
                break
            attempt(dataclasses.replace(closest, exclude=closest.exclude + tuple(n for n, _ in ranked[:k])))
    chosen = best.get("recipe")
    ctx.info["attempts"] = attempts
    if chosen is None and scores:  # --keep-failed writes the closest one (marked failed)
        quantize(max(scores, key=scores.get))
    ctx.info["search_s"] = round(time.perf_counter() - start, 1)
    if chosen is None:
        why = "the search budget (options.search_budget_s) ran out" if over_budget() else "no recipe passed"
        top = max(attempts, key=lambda a: a.get("score", 0)) if attempts else {}  # its name with its own numbers
        raise VariantFailed(f"{VARIANT.key}: {len(attempts)} recipes tried in {ctx.info['search_s']}s, {why}; best: "
                            f"{top.get('recipe', '-')} ({top.get('failed', '')}); see build.log and manifest "
                            "info.attempts")
    ctx.info.update(best["info"])
    trial.unlink(missing_ok=True)
    data_file(trial).unlink(missing_ok=True)
    ctx.info["recipe"] = chosen.label()
    ctx.log(f"kept [{chosen.label()}]: the fastest of {sum(a['passed'] for a in attempts)} passing recipe(s)")
    ctx.reproduce.append(_command(src, opts["op_types"], chosen, opts["quant_format"]))
    if len(attempts) > 1:
        ctx.reproduce.append(f"# recipe search: {len(attempts)} attempts, the fastest passing one above (see build.log)")


def _score(v) -> float:
    """How close a failed attempt came on the gate's own metric (generator/stages/gate.py)."""
    from generator.stages.gate import score

    return score(v.task, v.min_cosine)


def _command(src: Path, op_types, r: q.Recipe, quant_format: str = "qdq") -> str:
    return (
        "python -c \"from onnxruntime.quantization import *; "
        f"quantize_static('{src}', 'model.onnx', YOUR_CALIBRATION_READER, quant_format=QuantFormat.{q.QUANT_FORMATS[quant_format]}, "
        f"op_types_to_quantize={list(op_types)}, per_channel={r.per_channel}, "
        f"reduce_range={r.reduce_range}, activation_type=QuantType.{q.ACTIVATION_TYPES[r.activation_type]}, "
        f"weight_type=QuantType.{q.ACTIVATION_TYPES[r.weight_type]}, nodes_to_exclude={list(r.exclude)}, "
        f"calibrate_method=CalibrationMethod.{q.METHODS[r.method]}, "
        f"extra_options={{'ActivationSymmetric': {r.activation_type == 'int8'}, "
        f"'WeightSymmetric': {r.weight_type == 'int8'}}})\""
    )


runner = onnx_artifact_runner("all")


# The INT8 gate (README "INT8"; generator/stages/gate.py; measured on EfficientNet-Lite0 with ImageNet weights on
# hand-labelled photos and all-MiniLM-L6-v2 on real sentences, tests/test_int8_real.py):
# - classification with real data: with labels, MLPerf Inference's rule -- top-1 and top-5 accuracy >= 0.99 x
#   fp32's on the same samples; without, top-1 agreement >= 0.97 on the samples where fp32's top-1 probability is
#   >= 0.5, and the gate refuses to decide on fewer than 32 such samples (near-ties are noise, not evidence);
# - embedding: mean cosine >= 0.98 (ORT after the search 0.981, NNCF 0.995, dynamic 0.960, symmetric 0.850);
# - random inputs are far from what a calibrated model saw, so their cosine only catches catastrophes (>= 0.90
#   with real data; good and broken recipes both measured 0.96-0.98 there); with random calibration data the
#   same distribution is used for both and cosine >= 0.98 gates (no task gate: nothing real to agree on).
def int8_tolerance(model: ModelSpec, options: dict) -> Tolerance:
    real = model.calibration.data is not None or model.verify.data is not None
    if real:
        if model.verify.task == "embedding":
            return Tolerance(min_cosine=0.90, min_mean_cosine=0.98)
        return Tolerance(min_cosine=0.90, accuracy_ratio=0.99, min_confident_agreement=0.97, confidence=0.5,
                         min_confident_samples=32)
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
