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
