"""Variant ``onnx-int8-dynamic``: dynamic INT8 ONNX (weights int8, activation ranges at run time).

No calibration data needed. Stages: the optimised fp32 graph -> ``quantize_dynamic`` on MatMul/Gemm
(ONNX Runtime rewrites them to MatMulInteger / DynamicQuantizeMatMul) -> the accuracy gate (the INT8
default: see onnx_int8.int8_tolerance). Options: ``per_channel`` (default false), ``op_types``,
``nodes_to_exclude``, ``reduce_range`` (default: true on x86 without VNNI, where U8S8 can saturate -- ORT's
advice; generator/tables/isa.py), ``fusion`` (auto | transformer | none; default none; auto: ONNX Runtime's transformer
fusions first when the graph has a Softmax and a LayerNormalization), ``num_heads`` / ``hidden_size`` (for the
fusion; default read from the graph).
"""

from __future__ import annotations


from generator.tables import isa
from generator.stages import quantize as q
from generator.serve.runtimes import onnx_artifact_runner
from ..spec import Tolerance
from ..spec.options import OnnxInt8DynamicOptions
from .base import BuildContext, Skip, Variant
from .derived import fused_fp32, optimized_fp32
from .onnx_int8 import int8_tolerance


def build(ctx: BuildContext) -> None:
    opts = q.options(ctx, q.DYNAMIC_OPS, static=False)
    src = fused_fp32(ctx, optimized_fp32(ctx), opts, VARIANT.key)
    nodes = q.graph_nodes(src)
    if "op_types" not in ctx.variant.options and not any(op in opts["op_types"] for _, op in nodes):
        present = ", ".join(sorted({op for _, op in nodes})[:8])
        raise Skip(f"dynamic INT8 quantizes {', '.join(opts['op_types'])} and this graph has none ({present}): "
                   "nothing to quantize; onnx-int8 (static, calibrated) quantizes Conv")
    q.check_selection(nodes, opts["op_types"], opts["exclude"], f"{ctx.model.where}.variants.{ctx.variant.name}.options")
    ctx.info["isa"] = isa.summary()  # reduce_range followed this CPU (ORT's advice without VNNI)
    ctx.info.update(q.quantize_dynamic_onnx(
        src, ctx.artifact_dir / "model.onnx", op_types=opts["op_types"], per_channel=opts["per_channel"],
        reduce_range=opts["reduce_range"], exclude=opts["exclude"], variant=VARIANT.key))
    ctx.reproduce.append(
        "python -c \"from onnxruntime.quantization import quantize_dynamic, QuantType; "
        f"quantize_dynamic('{src}', 'model.onnx', op_types_to_quantize={opts['op_types']}, "
        f"per_channel={opts['per_channel']}, reduce_range={opts['reduce_range']}, weight_type=QuantType.QInt8, "
        f"nodes_to_exclude={opts['exclude']})\""
    )


runner = onnx_artifact_runner("all")


VARIANT = Variant(
    key="onnx-int8-dynamic",
    backend="onnxruntime",
    precision="int8",
    devices=("cpu",),
    tolerance=Tolerance(min_cosine=0.98, min_mean_cosine=0.98),
    default_tolerance=int8_tolerance,
    build=build,
    runner=runner,
    options=OnnxInt8DynamicOptions,
    description="dynamic INT8 ONNX (ONNX Runtime, MatMul/Gemm weights int8, no calibration)",
)
