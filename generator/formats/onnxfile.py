"""Reading an ONNX file's interface without its weights: below both the build stages (generator/stages/export.py)
and the validators (generator/config/rules/), so neither imports the other. ``onnx`` is imported lazily."""

from __future__ import annotations

from pathlib import Path


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


def onnx_external_files(path: Path) -> list[str]:
    """The external-data locations an ONNX file refers to (without loading the weights)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    out = []
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in init.external_data if e.key == "location"), None)
            if loc and loc not in out:
                out.append(loc)
    return out
