"""The optimised fp32 ONNX graph that derived variants (fp16, INT8, OpenVINO) start from.

It is the ``onnx`` variant's output (onnxslim + ORT basic), made once per export and kept beside it
in ``build/<model>/export/optimized/``: the export folder is replaced whenever the model changes, so
the copy can never be stale.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from .base import BuildContext
from .onnx_fp32 import optimize_onnx


def optimized_fp32(ctx: BuildContext) -> Path:
    base = ctx.base_onnx()
    d = base.parent / "optimized"
    out = d / "model.onnx"
    stamp = d / "source.json"
    st = base.stat()
    source = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if out.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("source") == source:
        ctx.info.update(json.loads(stamp.read_text()).get("info", {}))
        return out
    tmp = base.parent / "optimized.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    info = optimize_onnx(base, tmp / "model.onnx", tmp, ctx.log)
    for p in tmp.iterdir():
        if p.name not in ("model.onnx", "model.onnx.data"):  # the weights of a model over 2 GB stay
            p.unlink()
    (tmp / "source.json").write_text(json.dumps({"source": source, "info": info}))
    shutil.rmtree(d, ignore_errors=True)
    tmp.rename(d)
    ctx.info.update(info)
    return out


def fused_fp32(ctx: BuildContext, src: Path, opts: dict, variant: str) -> Path:
    """``src``, or ONNX Runtime's transformer fusions of it when ``opts['fusion']`` asks (auto: a graph with a
    Softmax and a LayerNormalization), written to the variant's work folder. A model with integer inputs (token
    ids) is fused as a text transformer (attention masks), any other as a vision one."""
    from generator.stages import quantize as q

    if not q.wants_fusion(q.graph_nodes(src), opts["fusion"]):
        ctx.info["fusion"] = {"applied": False, "option": opts["fusion"]}
        return src
    text = any(not t.dtype.is_float for t in ctx.model.inputs)
    out = ctx.work_dir / "fused" / "model.onnx"
    info = q.fuse_transformer(src, out, text=text, num_heads=opts.get("num_heads"),
                              hidden_size=opts.get("hidden_size"), variant=variant)
    ctx.info["fusion"] = {"applied": True, "option": opts["fusion"], **info}
    fused = ", ".join(f"{k} x{v}" for k, v in info["fused"].items()) or "nothing"
    ctx.log(f"ONNX Runtime transformer fusion ({info['model_type']}): {fused}")
    ctx.reproduce.append(
        "python -c \"from onnxruntime.transformers.optimizer import optimize_model; "
        f"optimize_model('{src}', model_type='{info['model_type']}', num_heads={opts.get('num_heads') or 0}, "
        f"hidden_size={opts.get('hidden_size') or 0}, opt_level=0).save_model_to_file('fused.onnx')\"")
    return out
