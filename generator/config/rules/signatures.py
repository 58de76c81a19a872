"""Reading what a model artifact declares (ONNX graph, OpenVINO IR, TorchScript forward()), for the rules.
Heavy modules (onnx, openvino, torch) are imported only when an artifact is read."""

from __future__ import annotations

from pathlib import Path

from generator.formats.onnxfile import onnx_external_files  # noqa: F401 (re-exported)

OV_TYPES = {"f32": "TYPE_FP32", "f16": "TYPE_FP16", "f64": "TYPE_FP64", "bf16": "TYPE_BF16", "i64": "TYPE_INT64",
            "i32": "TYPE_INT32", "i16": "TYPE_INT16", "i8": "TYPE_INT8", "u8": "TYPE_UINT8", "u16": "TYPE_UINT16",
            "u32": "TYPE_UINT32", "u64": "TYPE_UINT64", "boolean": "TYPE_BOOL"}


def artifact_signature(path: Path) -> dict:
    """{"inputs"/"outputs": [(names: tuple, triton dtype | None, dims with -1 for dynamic)]} of a model.onnx or
    model.xml, or {"args": [...], "n_outputs": int | None} of a TorchScript model.pt."""
    if path.suffix == ".onnx":
        from generator.tables import dtypes
        from generator.formats.onnxfile import onnx_io

        io = onnx_io(path)

        def conv(items):
            return [((n,), getattr(dtypes.BY_ONNX.get(et), "triton", f"onnx elem type {et}"),
                     [d if isinstance(d, int) and d >= 0 else -1 for d in dims]) for n, et, dims in items]

        return {"inputs": conv(io["inputs"]), "outputs": conv(io["outputs"])}
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))

        def conv(ports):
            out = []
            for p in ports:
                shape = p.get_partial_shape()
                dims = [-1 if d.is_dynamic else d.get_length() for d in shape] if shape.rank.is_static else None
                et = p.get_element_type().get_type_name()
                out.append((tuple(sorted(p.get_names())), OV_TYPES.get(et, et), dims))
            return out

        return {"inputs": conv(model.inputs), "outputs": conv(model.outputs)}
    if path.suffix == ".pt":
        import torch

        module = torch.jit.load(str(path), map_location="cpu")
        schema = module.forward.schema
        args = [a.name for a in schema.arguments[1:]]  # [0] is self
        required = sum(1 for a in schema.arguments[1:] if a.default_value is None)
        n_out = None
        if len(schema.returns) == 1:
            ret = schema.returns[0].type
            kind = ret.kind()
            n_out = len(ret.elements()) if kind == "TupleType" else (1 if kind == "TensorType" else None)
        return {"args": args, "required": required, "n_outputs": n_out}
    raise ValueError(f"no reader for {path.suffix} files")
