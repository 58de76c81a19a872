"""Variant ``onnx``: the graph-optimised fp32 ONNX model for Triton's onnxruntime backend.

Two passes, both portable to every execution provider (CPU, CUDA, TensorRT):
1. onnxslim: constant folding, dead-node elimination, shape simplification, pattern fusions;
2. ONNX Runtime's offline BASIC level: conv-bn fusion, more constant folding, redundant nodes.
(EXTENDED/ALL would bake in CPU-only contrib ops, so the server applies those itself at load.)
Node counts before and after each pass are recorded in the manifest.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from generator.stages.export import copy_onnx, finalize_onnx, has_external_data, onnx_io, save_onnx
from generator.serve.runtimes import onnx_artifact_runner, ort_session
from ..spec import Tolerance
from ..spec.options import OnnxOptions
from .base import BuildContext, Variant


def optimize_onnx(src: Path, out: Path, work: Path, log) -> dict:
    import onnx
    import onnxslim

    before = onnx_io(src)["nodes"]
    slimmed = work / "slim.onnx"
    try:
        model = onnxslim.slim(str(src))
        save_onnx(model, slimmed)  # with model.onnx's weights beside it when over 2 GB
    except Exception as e:  # onnxslim is best-effort: keep going with the exported graph
        log(f"onnxslim skipped: {str(e).splitlines()[0][:200]}")
        copy_onnx(src, slimmed)
    after_slim = onnx_io(slimmed)["nodes"]
    if has_external_data(slimmed):  # ORT's offline save of a model over 2 GB needs its own data-file setup
        log("ORT basic offline optimisation skipped: the model is over 2 GB (weights in model.onnx.data)")
        info = finalize_onnx(slimmed, out)
    else:
        ort_out = work / "ort_basic.onnx"
        ort_session(slimmed, level="basic", optimized_out=ort_out)
        info = finalize_onnx(ort_out, out)
    return {"nodes_exported": before, "nodes_after_onnxslim": after_slim, "nodes_optimized": info["nodes"]}


def build(ctx: BuildContext) -> None:
    out = ctx.artifact_dir / "model.onnx"
    ctx.info.update(optimize_onnx(ctx.base_onnx(), out, ctx.work_dir, ctx.log))
    ctx.reproduce.append(f"onnxslim {ctx.base_onnx()} slim.onnx")
    ctx.reproduce.append(
        "python -c \"import onnxruntime as o; s=o.SessionOptions(); "
        "s.graph_optimization_level=o.GraphOptimizationLevel.ORT_ENABLE_BASIC; "
        "s.optimized_model_filepath='model.onnx'; o.InferenceSession('slim.onnx', s)\""
    )


runner = onnx_artifact_runner("all")


VARIANT = Variant(
    key="onnx",
    backend="onnxruntime",
    precision="fp32",
    tolerance=Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    build=build,
    runner=runner,
    options=OnnxOptions,
    description="graph-optimised fp32 ONNX (onnxslim + ORT basic: constant folding, conv-bn fusion)",
)
