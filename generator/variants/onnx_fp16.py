"""Variant ``onnx-fp16``: the optimised fp32 graph converted to float16, inputs and outputs kept fp32.

A GPU variant: built and verified here on ONNX Runtime's CPU provider, served by Triton's onnxruntime
backend on the GPU (fp16 on x86 CPUs is no faster than fp32). Stages:
1. the ``onnx`` variant's optimisation (onnxslim + ORT basic), so constant folding happens in fp32;
2. ``onnxconverter_common.float16.convert_float_to_float16(keep_io_types=True)``: weights and compute in
   fp16, Cast nodes at the fp32 inputs/outputs (Triton's config keeps TYPE_FP32);
Option ``op_block_list``: op types kept in fp32 (default: the converter's list of ops without fp16
kernels). Verified at ORT's EXTENDED level: ALL crashes fp16 graphs in the NchwcTransformer, so the
config caps the server's level too (render.py writes ``optimization { graph { level: 1 } }``).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VariantFailed
from generator.stages.export import data_file, finalize_onnx, save_onnx
from generator.serve.runtimes import onnx_artifact_runner
from ..spec import Tolerance
from ..spec.options import OnnxFp16Options
from .base import BuildContext, Variant
from .derived import optimized_fp32


def convert_fp16(src: Path, out: Path, op_block_list: list[str] | None = None, log=lambda s: None) -> dict:
    """fp32 ONNX file -> fp16 ONNX file (fp32 I/O). Returns node counts and the op types kept in fp32.

    The converter sometimes leaves an op with mixed fp16/fp32 inputs (e.g. Clip after an int->float Cast);
    ONNX's checker names the op type, which is then kept in fp32 and the conversion redone (at most 5 times).
    """
    import re

    import onnx
    from onnxconverter_common import float16

    blocked = list(op_block_list) if op_block_list is not None else list(float16.DEFAULT_OP_BLOCK_LIST)
    added: list[str] = []
    for _ in range(6):
        model = onnx.load(str(src), load_external_data=True)
        _cast_attribute_to_first(model)
        float_casts = _float_casts(model)
        _identity_after_blocked_outputs(model, blocked)
        try:
            half = float16.convert_float_to_float16(model, keep_io_types=True, op_block_list=blocked)
            _retarget_float_casts(half, float_casts, blocked)
        except Exception as e:
            raise VariantFailed(f"onnx-fp16: float16 conversion failed: {type(e).__name__}: "
                                f"{str(e).splitlines()[0][:200]}")
        # the converter leaves stale fp32 value_info behind the Casts it inserts: drop it, finalize re-infers
        del half.graph.value_info[:]
        tmp = out.with_suffix(".raw.onnx")
        save_onnx(half, tmp)  # over 2 GB: weights in model.raw.onnx.data
        try:
            info = finalize_onnx(tmp, out)
            break
        except Exception as e:
            m = re.search(r"op_type:\s*(\w+)", str(e))
            node = re.search(r"node name:\s*([^)]+)\)", str(e))
            if not m or m.group(1) in blocked:
                raise VariantFailed(f"onnx-fp16: the fp16 graph is invalid at node '{node.group(1) if node else '?'}'"
                                    f" (op {m.group(1) if m else '?'}): {str(e).splitlines()[0][:200]}; "
                                    "add the op type to options.op_block_list")
            blocked.append(m.group(1))
            added.append(m.group(1))
            log(f"{m.group(1)} kept in fp32 (the fp16 graph did not type-check at node {node.group(1) if node else '?'})")
        finally:
            tmp.unlink(missing_ok=True)
            data_file(tmp).unlink(missing_ok=True)
    else:
        raise VariantFailed(f"onnx-fp16: the fp16 graph did not type-check after keeping {', '.join(added)} in fp32")
    casts = sum(1 for n in half.graph.node if n.op_type == "Cast")
    dtypes = [t.data_type for t in half.graph.initializer if t.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)]
    if dtypes and onnx.TensorProto.FLOAT16 not in dtypes:  # the repairs kept every op with weights in fp32
        raise VariantFailed(f"onnx-fp16: no weight is fp16 after keeping {', '.join(added) or 'the blocked ops'} in fp32 "
                            f"({len(dtypes)} fp32 weights, {casts} Casts added): this would be an fp32 model named fp16; "
                            "use the onnx variant (or set options.op_block_list)")
    return {"nodes_fp16": info["nodes"], "casts": casts, "kept_fp32_op_types": added}


def _identity_after_blocked_outputs(model, blocked: list[str]) -> None:
    """A graph output made by an op kept in fp32 (Resize ending a segmentation head) came out of the converter fp16
    despite keep_io_types (LRASPP), or made its cast clean-up raise ("The downstream node of the second cast node
    should be graph output": DeepLabv3): an Identity between the op and the output gives the converter an ordinary
    fp16 node there, which keep_io_types casts back to fp32."""
    from onnx import helper

    for out in model.graph.output:
        node = next((n for n in model.graph.node if out.name in n.output), None)
        if node is None or node.op_type not in blocked:
            continue
        inner = f"{out.name}__blocked"
        node.output[list(node.output).index(out.name)] = inner
        for n in model.graph.node:
            n.input[:] = [inner if i == out.name else i for i in n.input]
        model.graph.node.append(helper.make_node("Identity", [inner], [out.name], name=f"{out.name}__identity"))


def _cast_attribute_to_first(model) -> None:
    """Put each Cast's ``to`` attribute first. The converter's cast-pair clean-up reads ``attribute[0]`` as
    ``to``; torch's exporter writes ``saturate`` first, so a Cast(to=BOOL) read as "to float" was dropped with
    the fp16 Cast before it (DETR's mask: And then got a float input) or made the clean-up raise (T5)."""
    for n in model.graph.node:
        if n.op_type == "Cast" and len(n.attribute) > 1 and n.attribute[0].name != "to":
            attrs = sorted(n.attribute, key=lambda a: a.name != "to")
            copies = [type(a)() for a in attrs]
            for c, a in zip(copies, attrs):
                c.CopyFrom(a)
            del n.attribute[:]
            n.attribute.extend(copies)


def _float_casts(model) -> set[str]:
    """Names of the graph's own ``Cast(to=FLOAT)`` nodes (int -> float: positions, masks, bucket indices)."""
    from onnx import TensorProto

    return {n.name for n in model.graph.node if n.op_type == "Cast" and n.name
            and any(a.name == "to" and a.i == TensorProto.FLOAT for a in n.attribute)}


def _retarget_float_casts(half, names: set[str], blocked: list[str]) -> None:
    """onnxconverter-common 1.16 marks a Cast(to=FLOAT)'s output fp16 but leaves the node casting to fp32, so
    its fp16 consumers get mixed types (DeBERTa's relative positions: Cast -> Div by an fp16 constant).
    Make those Casts produce fp16, as the converter's value types say (older converter releases did this)."""
    from onnx import TensorProto

    if "Cast" in blocked:
        return
    for n in half.graph.node:
        if n.op_type == "Cast" and n.name in names:
            for a in n.attribute:
                if a.name == "to" and a.i == TensorProto.FLOAT:
                    a.i = TensorProto.FLOAT16


def build(ctx: BuildContext) -> None:
    blocked = ctx.options.op_block_list
    blocked = list(blocked) if blocked is not None else None
    fp32 = optimized_fp32(ctx)
    ctx.info.update(convert_fp16(fp32, ctx.artifact_dir / "model.onnx", blocked, ctx.log))
    ctx.reproduce.append(f"onnxslim {ctx.base_onnx()} slim.onnx  # then ORT basic -> fp32.onnx (see the onnx variant)")
    ctx.reproduce.append(
        "python -c \"import onnx; from onnxconverter_common import float16; "
        "onnx.save(float16.convert_float_to_float16(onnx.load('fp32.onnx'), keep_io_types=True), 'model.onnx')\""
    )


runner = onnx_artifact_runner("extended")  # ORT EXTENDED: ALL crashes on fp16 graphs (max_graph_level below)


VARIANT = Variant(
    key="onnx-fp16",
    backend="onnxruntime",
    precision="fp16",
    devices=("gpu",),
    max_graph_level="extended",  # ORT's NchwcTransformer (level ALL) crashes fp16 graphs: the config caps the level
    # fp16 keeps ~3 significant digits: about 1e-2 relative on logits, cosine well above 0.999
    tolerance=Tolerance(atol=1e-2, rtol=1e-2, min_cosine=0.999),
    build=build,
    runner=runner,
    options=OnnxFp16Options,
    description="fp16 ONNX (fp32 I/O) for the GPU: onnxconverter-common on the optimised fp32 graph",
)
