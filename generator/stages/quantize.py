"""Stages for INT8 ONNX with ONNX Runtime's quantization tools: file in, file out.

- ``quantize_static_onnx``: QDQ format (or QOperator), activations calibrated on the spec's calibration samples
  (minmax | entropy | percentile), weights int8 (per-tensor or per-channel);
- ``quantize_dynamic_onnx``: weights int8, activation ranges computed at run time (no calibration).

By default only MatMul, Gemm and Conv are quantized: they hold the compute, and quantizing every op
(Add, Softmax, LayerNorm...) multiplied the error ~30x on the ViT for no speed. ``nodes_to_exclude`` keeps
named nodes in fp32. A quantization that raises, or whose result ONNX Runtime cannot load, becomes
``VariantFailed`` naming the node and op type found in the error (or the op types asked for).

- ``fuse_transformer``: before either, ONNX Runtime's transformer graph fusions
  (``onnxruntime.transformers.optimizer.optimize_model``: LayerNorm, SkipLayerNorm, BiasGelu, Attention), so
  that the quantizer sees the fused graph (option ``fusion``: auto | transformer | none).
"""

from __future__ import annotations

from dataclasses import replace
from dataclasses import dataclass
from pathlib import Path

from generator.errors import UserError, VariantFailed
from generator.stages.export import data_file, finalize_onnx, has_external_data, save_onnx

# Relu/Clip are "removable activations": with them listed, ORT drops the activation and quantizes the conv's
# output with the activation's range. Without them the conv output is quantized over its whole range and
# then clipped: on EfficientNet-Lite (ReLU6) that left ~8 levels in [0, 6] and top-1 agreement 0.39.
STATIC_OPS = ("MatMul", "Gemm", "Conv", "Relu", "Clip")
DYNAMIC_OPS = ("MatMul", "Gemm")
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}
ACTIVATION_TYPES = {"uint8": "QUInt8", "int8": "QInt8"}
QUANT_FORMATS = {"qdq": "QDQ", "qoperator": "QOperator"}


def wants_fusion(nodes: list[tuple[str, str]], fusion: str) -> bool:
    """``fusion`` auto: a transformer is a graph with a Softmax and a LayerNormalization (what the fusions match)."""
    if fusion != "auto":
        return fusion == "transformer"
    ops = {op for _, op in nodes}
    return "Softmax" in ops and "LayerNormalization" in ops


def fuse_transformer(src: Path, out: Path, *, text: bool = False, num_heads: int | None = None,
                     hidden_size: int | None = None, variant: str = "onnx-int8") -> dict:
    """ONNX Runtime's transformer fusions (python optimizer, no ORT session level: ``src`` is already
    optimised) on ``src`` -> ``out``. ``text``: a token-input model (model type bert, attention masks) rather
    than a vision one (vit, no mask). Returns the op types it fused and how many."""
    from onnxruntime.transformers.optimizer import optimize_model

    try:
        opt = optimize_model(str(src), model_type="bert" if text else "vit", num_heads=num_heads or 0,
                             hidden_size=hidden_size or 0, opt_level=0)
        stats = {k: v for k, v in opt.get_fused_operator_statistics().items() if v}
        raw = out.with_suffix(".fused.onnx")
        opt.save_model_to_file(str(raw), use_external_data_format=has_external_data(src))
    except Exception as e:
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise VariantFailed(f"{variant}: ONNX Runtime's transformer fusion failed: {type(e).__name__}: {first}; "
                            "set options.fusion: none (or give options.num_heads / hidden_size)") from None
    finalize_onnx(raw, out)
    raw.unlink(missing_ok=True)
    data_file(raw).unlink(missing_ok=True)
    return {"model_type": "bert" if text else "vit", "fused": stats}


def graph_nodes(path: Path) -> list[tuple[str, str]]:
    """(name, op_type) of every node, in graph (topological) order."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [(n.name, n.op_type) for n in proto.graph.node]


def check_selection(nodes: list[tuple[str, str]], op_types: list[str], exclude: list[str], where: str) -> None:
    """Op types that match no node and excluded names that are not nodes are spec errors."""
    present = sorted({op for _, op in nodes})
    if not any(op in op_types for _, op in nodes):
        raise UserError(f"{where}.op_types: no node of the graph has op type {', '.join(op_types)}; "
                        f"the graph has {', '.join(present)}")
    names = {n for n, _ in nodes}
    for i, name in enumerate(exclude):
        if name not in names:
            some = ", ".join([n for n, op in nodes if op in op_types][:5])
            raise UserError(f"{where}.nodes_to_exclude[{i}]: '{name}' is not a node of the graph; "
                            f"quantizable nodes are e.g. {some}")


def failure(variant: str, e: BaseException, nodes: list[tuple[str, str]], op_types: list[str]) -> VariantFailed:
    """A VariantFailed naming the node (and op type) the error talks about, or the op types asked for."""
    text = str(e).strip() or type(e).__name__
    hit = next(((n, op) for n, op in sorted(nodes, key=lambda x: -len(x[0])) if n and n in text), None)
    first = text.splitlines()[0][:200]
    if hit:
        return VariantFailed(f"{variant}: quantization failed at node '{hit[0]}' (op {hit[1]}): {first}; "
                             f"exclude it with options.nodes_to_exclude: [{hit[0]}]")
    return VariantFailed(f"{variant}: quantization of op types {', '.join(op_types)} failed: "
                         f"{type(e).__name__}: {first}; narrow options.op_types or exclude nodes")


def diagnose(src: Path, samples: list[dict], op_types) -> tuple[str, str, str] | None:
    """The first node (graph order) of ``op_types`` whose float input is not finite on the calibration
    samples: (node, op type, what is wrong). Run only after a failure (one fp32 pass per sample)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper

    from generator.serve.runtimes import ort_session

    proto = onnx.load(str(src), load_external_data=True)
    inits = {i.name for i in proto.graph.initializer}
    watch = []
    for n in proto.graph.node:
        if n.op_type in op_types:
            for t in n.input:
                if t and t not in inits and t not in watch:
                    watch.append(t)
    have = {o.name for o in proto.graph.output}
    proto.graph.output.extend([helper.make_tensor_value_info(t, TensorProto.FLOAT, None) for t in watch if t not in have])
    tmp = src.with_name("diagnose.onnx")
    save_onnx(proto, tmp)
    try:
        sess = ort_session(tmp, level="disable")
        outs = [o.name for o in sess.get_outputs()]
        bad: dict[str, str] = {}
        for feeds in samples:
            for name, value in zip(outs, sess.run(outs, feeds)):
                if name in watch and name not in bad and np.issubdtype(value.dtype, np.floating):
                    if not np.all(np.isfinite(value)):
                        bad[name] = "nan" if np.isnan(value).any() else "inf"
    except Exception:
        return None
    finally:
        tmp.unlink(missing_ok=True)
        data_file(tmp).unlink(missing_ok=True)
    for n in proto.graph.node:
        if n.op_type in op_types:
            for t in n.input:
                if t in bad:
                    return n.name, n.op_type, f"its input '{t}' is {bad[t]} on the calibration data"
    return None


def _reader(samples: list[dict]):
    from onnxruntime.quantization import CalibrationDataReader

    class FeedsReader(CalibrationDataReader):
        """Hands ONNX Runtime's calibrator one feeds dict at a time, then None."""

        def __init__(self):
            self.it = iter(samples)

        def get_next(self):
            return next(self.it, None)

        def rewind(self):
            self.it = iter(samples)

    return FeedsReader()


def _load_check(variant: str, path: Path, nodes, op_types) -> None:
    from generator.serve.runtimes import ort_session

    try:
        ort_session(path, level="all")
    except Exception as e:
        raise failure(variant, e, nodes, op_types) from None


def quantize_static_onnx(src: Path, out: Path, samples: list[dict], *, op_types=STATIC_OPS, per_channel=False,
                         method="minmax", reduce_range=False, activation_type="uint8", exclude=(),
                         variant="onnx-int8", weight_type="int8", quant_format="qdq") -> dict:
    """fp32 ONNX -> int8 ONNX (QDQ pairs, or QLinear* ops with ``quant_format`` qoperator) calibrated on
    ``samples`` (feeds dicts). Returns what was quantized."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    nodes = graph_nodes(src)
    raw = out.with_suffix(".raw.onnx")
    try:
        quantize_static(
            str(src), str(raw), _reader(samples),
            quant_format=getattr(QuantFormat, QUANT_FORMATS[quant_format]),
            op_types_to_quantize=list(op_types),
            per_channel=per_channel,
            reduce_range=reduce_range,
            activation_type=getattr(QuantType, ACTIVATION_TYPES[activation_type]),
            weight_type=getattr(QuantType, ACTIVATION_TYPES[weight_type]),
            nodes_to_exclude=list(exclude),
            calibrate_method=getattr(CalibrationMethod, METHODS[method]),
            # symmetric int8 activations where asked; weights are always symmetric int8
            extra_options={"ActivationSymmetric": activation_type == "int8", "WeightSymmetric": weight_type == "int8"},
            use_external_data_format=has_external_data(src),  # a model over 2 GB
        )
    except (UserError, VariantFailed):
        raise
    except Exception as e:
        found = diagnose(src, samples, op_types)
        if found:
            node, op, why = found
            raise VariantFailed(f"{variant}: quantization failed at node '{node}' (op {op}): {why} "
                                f"({type(e).__name__}: {str(e).strip().splitlines()[0][:120] if str(e).strip() else ''}); "
                                "fix the calibration data or exclude the node with options.nodes_to_exclude") from None
        raise failure(variant, e, nodes, list(op_types)) from None
    common = _finish(raw, out, variant, nodes, op_types, exclude)
    return {**common, "calibration_samples": len(samples), "method": method, "per_channel": per_channel,
            "activation_type": activation_type, "weight_type": weight_type, "reduce_range": reduce_range,
            "op_types": list(op_types), "quant_format": quant_format}


def quantize_dynamic_onnx(src: Path, out: Path, *, op_types=DYNAMIC_OPS, per_channel=False, reduce_range=False,
                          exclude=(), variant="onnx-int8-dynamic") -> dict:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    nodes = graph_nodes(src)
    raw = out.with_suffix(".raw.onnx")
    try:
        quantize_dynamic(str(src), str(raw), op_types_to_quantize=list(op_types), per_channel=per_channel,
                         reduce_range=reduce_range, weight_type=QuantType.QInt8, nodes_to_exclude=list(exclude),
                         use_external_data_format=has_external_data(src))
    except Exception as e:
        raise failure(variant, e, nodes, list(op_types)) from None
    return {**_finish(raw, out, variant, nodes, op_types, exclude), "per_channel": per_channel,
            "op_types": list(op_types)}


def _finish(raw: Path, out: Path, variant: str, nodes, op_types, exclude) -> dict:
    """The quantizer's output saved as ``out`` (checked, shapes inferred), its scratch files gone, the result
    loaded by ONNX Runtime; how many nodes it has and how many were quantized."""
    info = finalize_onnx(raw, out)
    raw.unlink(missing_ok=True)
    data_file(raw).unlink(missing_ok=True)
    _load_check(variant, out, nodes, list(op_types))
    quantized = [n for n, op in nodes if op in op_types and n not in set(exclude)]
    return {"nodes": info["nodes"], "quantized_nodes": len(quantized), "excluded": list(exclude)}


def options(ctx, ops_default, *, static: bool) -> dict:
    """The variant's options (typed and checked with the spec, generator/spec/options.py) with the defaults that
    depend on the model and this CPU filled in."""
    o = ctx.options
    from generator.tables.isa import quantization_defaults

    cpu = quantization_defaults(static=static)  # ORT's advice for this CPU (generator/tables/isa.py) unless the spec says
    out = {
        "per_channel": static if o.per_channel is None else o.per_channel,
        "reduce_range": cpu["reduce_range"] if o.reduce_range is None else o.reduce_range,
        "op_types": list(ops_default if o.op_types is None else o.op_types),
        "exclude": list(o.nodes_to_exclude or ()),
        "fusion": o.fusion, "num_heads": o.num_heads, "hidden_size": o.hidden_size,
    }
    if static:
        act = o.activation_type
        wt = o.weight_type or ("int8" if act == "int8" else cpu["weight_type"])
        out.update(method=o.calibration_method or ctx.model.calibration.method, activation_type=act, weight_type=wt,
                   search=o.fallback if o.search is None else o.search, search_budget_s=float(o.search_budget_s),
                   quant_format=o.quant_format)
    return out


# --------------------------------------------------------------------------- recipe search

@dataclass(frozen=True)
class Recipe:
    """One way to quantize statically. ``activation_type`` uint8 = asymmetric activations, int8 = symmetric;
    ``weight_type`` uint8 = U8U8 (no VPMADDUBSW saturation on CPUs without VNNI, ORT docs)."""

    method: str = "minmax"
    per_channel: bool = True
    activation_type: str = "uint8"
    reduce_range: bool = False
    weight_type: str = "int8"
    exclude: tuple[str, ...] = ()

    def label(self) -> str:
        parts = [self.method, "per-channel" if self.per_channel else "per-tensor",
                 "symmetric" if self.activation_type == "int8" else "asymmetric",
                 "U8U8" if self.weight_type == "uint8" else ("U8S8" if self.activation_type == "uint8" else "S8S8")]
        if self.reduce_range:
            parts.append("reduce_range")
        if self.exclude:
            parts.append(f"{len(self.exclude)} nodes fp32")
        return " ".join(parts)

    def kernels(self) -> tuple:
        """What decides the speed: the calibration method and reduce_range only change scales, so recipes equal
        here run the same kernels (the search does not time a second one once one of them passed)."""
        return self.activation_type, self.weight_type, self.per_channel, self.exclude

    def as_dict(self) -> dict:
        return {"method": self.method, "per_channel": self.per_channel, "activation_type": self.activation_type,
                "reduce_range": self.reduce_range, "weight_type": self.weight_type, "exclude": list(self.exclude)}


def recipe_variations(first: Recipe, vnni: bool) -> list[Recipe]:
    """The bounded set tried after ``first`` fails, all full-INT8 (same speed) -- exclusions come after:
    the other calibration methods, per-channel weights, the other activation symmetry (symmetric int8
    activations go with int8 weights), and without VNNI the other cures ORT documents for U8S8 saturation
    (U8U8, reduce_range) and plain U8S8 (verified on this CPU like every recipe)."""
    out: list[Recipe] = []

    def add(r: Recipe) -> None:
        if r != first and r not in out:
            out.append(r)

    for m in ("entropy", "percentile", "minmax"):
        add(replace(first, method=m, per_channel=True))
    if first.activation_type == "uint8":
        add(replace(first, per_channel=True, activation_type="int8", weight_type="int8"))
    else:
        add(replace(first, per_channel=True, activation_type="uint8"))
    if not vnni:
        add(replace(first, per_channel=True, activation_type="uint8", weight_type="uint8", reduce_range=False))
        add(replace(first, per_channel=True, activation_type="uint8", weight_type="int8", reduce_range=True))
        add(replace(first, per_channel=True, activation_type="uint8", weight_type="int8", reduce_range=False))
    return out


def node_errors(src: Path, qdq: Path, samples: list[dict], op_types, exclude=()) -> list[tuple[str, float]]:
    """Per-node quantization noise of ``qdq`` (a QDQ model of ``src``), worst first: for every quantized node
    of ``op_types``, the signal-to-quantization-noise ratio (dB) of its data and weight inputs -- activations before vs
    after their QuantizeLinear/DequantizeLinear pair on ``samples`` and weights float vs dequantized (ONNX
    Runtime's qdq_loss_debug), noise powers added. Lower = more error contributed."""
    import math

    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations, compute_activation_error, compute_signal_to_quantization_noice_ratio,
        compute_weight_error, create_activation_matching, create_weight_matching,
        modify_model_output_intermediate_tensors)

    def activations(model: Path) -> dict:
        aug = qdq.with_name("debug.onnx")
        try:
            modify_model_output_intermediate_tensors(str(model), str(aug))
            return collect_activations(str(aug), _reader(samples))
        finally:
            aug.unlink(missing_ok=True)

    import numpy as np

    def local_sqnr(pre, post) -> float:
        # ORT folds a following Relu/Clip into the QDQ range: compare with the pre tensor clipped to the range
        # the dequantized values span, so that the clip is not counted as quantization noise
        lo, hi = min(float(p.min()) for p in post), max(float(p.max()) for p in post)
        return compute_signal_to_quantization_noice_ratio([np.clip(p, lo, hi) for p in pre], post)

    match = create_activation_matching(activations(qdq), activations(src))
    sqnr = {k: v["qdq_err"] for k, v in compute_activation_error(match, local_sqnr).items()}
    sqnr.update(compute_weight_error(create_weight_matching(str(src), str(qdq))))
    out = []
    for name, op in graph_nodes_io(src):
        if op[0] not in op_types or name in set(exclude):
            continue
        # data and weight only: a bias (Conv/Gemm input 2) is int32 at input x weight scale, so its error is tiny
        # next to the output, but a near-zero bias rounds to 0 at 0 dB and would crowd out the nodes that matter
        noise = sum(10 ** (-sqnr[t] / 10) for t in op[1][:2] if t in sqnr and math.isfinite(sqnr[t]))
        if noise > 0:
            out.append((name, -10 * math.log10(noise)))
    return sorted(out, key=lambda x: x[1])


def graph_nodes_io(path: Path) -> list[tuple[str, tuple[str, list[str]]]]:
    """(name, (op_type, inputs)) of every node, in graph order."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return [(n.name, (n.op_type, list(n.input))) for n in proto.graph.node]


def exclusion_steps(n_quantizable: int) -> list[int]:
    """How many of the worst nodes to keep in fp32, step by step: 1, 2, 4, ... up to a quarter of the
    quantizable nodes (past that INT8 buys little speed)."""
    cap = max(1, n_quantizable // 4)
    steps, k = [], 1
    while k < cap:
        steps.append(k)
        k *= 2
    steps.append(cap)
    return sorted(set(steps))
