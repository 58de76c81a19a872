"""Stage 2: PyTorch module -> one fp32 ONNX file with a dynamic batch dim and named dynamic dims.

``torch.onnx.export(dynamo=True)`` first; the legacy TorchScript exporter is a logged fallback.
Weights are written inline (one ``model.onnx``) when under 2 GB, else beside it in
``model.onnx.data`` (Triton's onnxruntime backend loads that name from the version folder).
The result passes ``onnx.checker`` and shape inference.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable


from .errors import UserError
from .inputs import Point, make_inputs
from .spec import ModelSpec

TWO_GB = 2 * 1024**3
EXTERNAL_DATA_NAME = "model.onnx.data"
DEFAULT_OPSET = 20


def example_point(model: ModelSpec) -> Point:
    """The shape traced at export: batch 2 (not 1, which tracers specialise) and dims at opt (>= 2)."""
    batch = 2 if model.max_batch_size > 0 else 0
    dims = {k: (opt if opt > 1 else min(2, hi)) for k, (lo, opt, hi) in model.dims.items()}
    return Point(batch, tuple(sorted(dims.items())))


def export_onnx(module, model: ModelSpec, out: Path, log: Callable[[str], None] = lambda s: None) -> dict:
    """Write ``out`` (model.onnx, maybe with model.onnx.data beside it). Returns export info."""
    import torch

    point = example_point(model)
    feeds = make_inputs(model, point, seed=1)
    args = tuple(torch.from_numpy(feeds[t.name]) for t in model.inputs)
    opset = model.opset or DEFAULT_OPSET
    errors = []
    with tempfile.TemporaryDirectory(prefix="tritongen-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        exporter = None
        for name, fn in (("dynamo", _export_dynamo), ("legacy", _export_legacy)):
            try:
                fn(module, model, args, raw, opset)
                exporter = name
                break
            except UserError:
                raise
            except Exception as e:
                errors.append((name, e))
                log(f"{name} exporter failed: {_first_line(e)}")
                for p in Path(tmp).iterdir():
                    p.unlink() if p.is_file() else shutil.rmtree(p)
        if exporter is None:
            raise UserError(_export_error(model, errors))
        if exporter == "legacy":
            log(f"exported with the legacy exporter (dynamo failed: {_first_line(errors[0][1])})")
        info = finalize_onnx(raw, out)
    info.update(exporter=exporter, opset=opset)
    return info


def _export_dynamo(module, model: ModelSpec, args, path: Path, opset: int) -> None:
    import torch
    from torch.export import Dim

    dims = {}
    if model.max_batch_size > 0:
        dims["batch"] = Dim("batch", min=1, max=max(model.max_batch_size, 2))
    for name, (lo, _, hi) in model.dims.items():
        dims[name] = Dim(name, min=lo, max=max(hi, 2))
    shapes = []
    for t in model.inputs:
        axes = {}
        off = 0
        if model.max_batch_size > 0:
            axes[0] = dims["batch"]
            off = 1
        for j, d in enumerate(t.shape):
            if isinstance(d, str):
                axes[j + off] = dims[d]
        shapes.append(axes or None)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            opset_version=opset,
            input_names=[t.name for t in model.inputs],
            output_names=[t.name for t in model.outputs],
            dynamic_shapes=tuple(shapes),
            external_data=True,
            verbose=False,
        )


def _export_legacy(module, model: ModelSpec, args, path: Path, opset: int) -> None:
    import torch
    import warnings

    axes = {}
    for t in (*model.inputs, *model.outputs):
        a = {}
        off = 0
        if model.max_batch_size > 0:
            a[0] = "batch"
            off = 1
        for j, d in enumerate(t.shape):
            if isinstance(d, str):
                a[j + off] = d
        if a:
            axes[t.name] = a
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=min(opset, 18),
            input_names=[t.name for t in model.inputs],
            output_names=[t.name for t in model.outputs],
            dynamic_axes=axes,
            do_constant_folding=True,
        )


def finalize_onnx(src: Path, out: Path) -> dict:
    """Load (with external data), check, infer shapes, save as one file (or with .data when >= 2 GB)."""
    import onnx

    proto = onnx.load(str(src), load_external_data=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = proto.ByteSize()
    external = size >= TWO_GB
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=False) if not external else proto
    except Exception:
        pass
    if external:
        onnx.save_model(proto, str(out), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=EXTERNAL_DATA_NAME, size_threshold=1024)
    else:
        onnx.save_model(proto, str(out))
    onnx.checker.check_model(str(out), full_check=not external)
    return {"nodes": len(proto.graph.node), "bytes": size, "external_data": external}


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:300]


_OP_PATTERNS = [
    r"No ONNX function found for <OpOverload\(op='([\w.]+)'",
    r"unrecognized namespace ([\w:.]+)",
    r"Exporting the operator ['`]?([\w:.]+)['`]? to ONNX opset version \d+ is not supported",
    r"call_function\[target=torch\.ops\.([\w.]+?)(?:\.default)?\]",
    r"(?:operator|op) ['`]([\w]+::[\w.]+)['`]",
]


def unsupported_op(errors) -> str | None:
    text = "\n".join(f"{e!s}\n{e.__cause__!s}" for _, e in errors)
    for pat in _OP_PATTERNS:
        m = re.search(pat, text)
        if m:
            return m.group(1)
    return None


def _export_error(model: ModelSpec, errors) -> str:
    op = unsupported_op(errors)
    if op:
        return (
            f"{model.where}: ONNX export failed: operator '{op}' is not supported by the ONNX exporters "
            f"(opset {model.opset or DEFAULT_OPSET}); replace it in the model, register a custom ONNX translation, "
            "or try another opset"
        )
    return f"{model.where}: ONNX export failed (dynamo: {_first_line(errors[0][1])})"


def onnx_io(path: Path) -> dict:
    """The graph's real inputs/outputs: {"inputs": [(name, onnx elem type, [dims])], "outputs": [...]}.

    Dims are ints, or strings for symbolic dims (or '?' when unnamed).
    """
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in proto.graph.initializer}

    def dims(vi):
        out = []
        for d in vi.type.tensor_type.shape.dim:
            if d.HasField("dim_value"):
                out.append(int(d.dim_value))
            else:
                out.append(d.dim_param or "?")
        return out

    return {
        "inputs": [(i.name, i.type.tensor_type.elem_type, dims(i)) for i in proto.graph.input if i.name not in inits],
        "outputs": [(o.name, o.type.tensor_type.elem_type, dims(o)) for o in proto.graph.output],
        "nodes": len(proto.graph.node),
    }

