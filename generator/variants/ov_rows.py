"""Dead rows: an OpenVINO model computes only the rows its outputs read.

A classifier that reads one token of a sequence (ViT's and BERT's ``x[:, 0]``, a decoder's ``x[:, -1]``) computes
every token of its last block although only one row reaches the output: in ViT-B/16 the last block's query
projection, attention, output projection and MLP for 196 of 197 tokens, 7% of the model's work. ``prune(model)``
walks back from each such selection (a ``Gather`` of one constant index on a non-batch axis) through the ops that
work row by row along that axis -- elementwise ops (with numpy broadcasting), MatMul (rows of A), Reshape and
Transpose (the axis moved), MVN / Softmax / reductions over other axes, ScaledDotProductAttention (rows of the
queries; keys and values stay whole), Concat on another axis -- and, where every consumer of a tensor needs only
that row, makes its producer compute only that row (a one-row ``Slice`` where the walk stops). Nothing else
changes: a tensor anything else reads in full stays whole, causal attention and unknown ops stop the walk, and the
caller compares the rewritten model with the original before keeping it (``openvino_ir.fp32_model``).

    prune(model, shapes) -> dict  # rewrites model in place; {"rewritten": ops, "matmul_ops_before"/"_after": ...}
"""

from __future__ import annotations

import numpy as np

UNARY = {"Abs", "Ceiling", "Clamp", "Convert", "Cos", "Elu", "Erf", "Exp", "Floor", "Gelu", "HSigmoid", "HSwish",
         "Log", "LogicalNot", "Mish", "Negative", "Relu", "Round", "Sigmoid", "Sign", "Sin", "SoftPlus", "Sqrt",
         "Swish", "Tanh"}
BROADCAST = {"Add", "Subtract", "Multiply", "Divide", "Power", "Maximum", "Minimum", "SquaredDifference", "Mod",
             "FloorMod", "Equal", "NotEqual", "Less", "LessEqual", "Greater", "GreaterEqual", "LogicalAnd",
             "LogicalOr", "LogicalXor", "Select", "FakeQuantize"}
REDUCE = {"ReduceMean", "ReduceSum", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2"}
INT64_MAX = np.iinfo(np.int64).max

FULL = "full"


def _const(node):
    """The value of a Constant node, else None."""
    if node.get_type_name() != "Constant":
        return None
    return np.asarray(node.get_data())


def _axes(node, port: int, rank: int) -> set | None:
    v = _const(node.input_value(port).get_node())
    if v is None:
        return None
    return {int(a) % rank for a in np.atleast_1d(v)}


def _dim(pshape, i):
    d = pshape[i]
    return d.get_length() if d.is_static else None


def _selector(node):
    """(axis, index) of a Gather that picks one row on a non-batch axis by a constant index, else None."""
    if node.get_type_name() != "Gather" or node.get_input_size() < 3:
        return None
    if int(node.get_attributes().get("batch_dims", 0)) != 0:
        return None
    idx, axis = _const(node.input_value(1).get_node()), _const(node.input_value(2).get_node())
    ps = node.get_input_partial_shape(0)
    if idx is None or axis is None or idx.size != 1 or ps.rank.is_dynamic:
        return None
    rank = ps.rank.get_length()
    a = int(axis.reshape(())) % rank
    if a == 0:
        return None  # the batch axis: picking samples is not what this pass is for
    i = int(idx.reshape(()))
    n = _dim(ps, a)
    if i < 0 and n is not None:
        i += n
    if n is not None and not 0 <= i < n:
        return None
    if n is None and i not in (0, -1):
        return None  # a dynamic size: only the first and the last row are the same row after broadcasting
    return a, i


def _row_of_input(node, port: int, out_axis: int, out_rank: int, index: int):
    """The request on a broadcast input: its aligned axis, or FULL where it broadcasts along the axis."""
    ps = node.get_input_partial_shape(port)
    if ps.rank.is_dynamic:
        return FULL
    a = out_axis - (out_rank - ps.rank.get_length())
    if a < 0:
        return FULL
    d = ps[a]
    if d.is_static and d.get_length() == 1:
        return FULL  # it broadcasts along the axis: every row of the output reads its one row
    if d.is_dynamic and index not in (0, -1):
        return FULL  # it may broadcast at run time: only the first and the last row are that one row then
    return a


def _rule(node, axis: int):
    """Per input, the axis whose rows the node needs when only row ``axis`` of its output is wanted, or FULL;
    None when the node does not work row by row along ``axis``."""
    t = node.get_type_name()
    if node.get_output_size() != 1:
        return None
    ops = node.get_output_partial_shape(0)
    if ops.rank.is_dynamic:
        return None
    r = ops.rank.get_length()
    n = node.get_input_size()
    if t in UNARY:
        return [axis] + [FULL] * (n - 1)
    if t in BROADCAST:
        if node.get_attributes().get("auto_broadcast", "numpy") not in ("numpy", "none"):
            return None
        return [None] * n  # filled per input by the caller (needs the index)
    if t == "MatMul":
        ra, rb = (node.get_input_partial_shape(i).rank for i in (0, 1))
        if ra.is_dynamic or rb.is_dynamic or ra.get_length() < 2 or rb.get_length() < 2:
            return None
        at = node.get_attributes()
        if axis == r - 2:
            return [ra.get_length() - (1 if at.get("transpose_a") else 2), FULL]
        if axis == r - 1:
            return None
        return [None, None]  # a batch axis: both, as broadcasting allows
    if t == "Transpose":
        perm = _const(node.input_value(1).get_node())
        if perm is None:
            return None
        perm = perm.ravel()
        return [int(perm[axis]) if perm.size else r - 1 - axis, FULL]
    if t == "Reshape":
        ips = node.get_input_partial_shape(0)
        if ips.rank.is_dynamic or ips.rank.get_length() <= axis:
            return None
        same = all(str(ips[i]) == str(ops[i]) for i in range(axis + 1))
        tail = [_dim(ops, i) for i in range(axis + 1, r)]
        if not same or sum(d is None for d in tail) > 1:
            return None
        return [axis, FULL]
    if t == "MVN" and n == 2:
        axes = _axes(node, 1, r)
        return None if axes is None or axis in axes else [axis, FULL]
    if t in ("NormalizeL2",):
        axes = _axes(node, 1, r)
        return None if axes is None or axis in axes else [axis, FULL]
    if t in ("Softmax", "LogSoftmax"):
        return None if int(node.get_attributes()["axis"]) % r == axis else [axis]
    if t in REDUCE:
        ir = node.get_input_partial_shape(0).rank.get_length()
        axes = _axes(node, 1, ir)
        if axes is None:
            return None
        kept = list(range(ir)) if node.get_attributes().get("keep_dims") else [i for i in range(ir) if i not in axes]
        src = kept[axis]
        return None if src in axes else [src, FULL]
    if t == "Concat":
        return None if int(node.get_attributes()["axis"]) % r == axis else [axis] * n
    if t == "ScaledDotProductAttention":
        if node.get_attributes().get("causal"):
            return None  # query i sees keys up to i: a sliced query would see a different prefix
        if axis != r - 2:
            return None
        rq = node.get_input_partial_shape(0).rank.get_length()
        req = [rq - 2, FULL, FULL] + [FULL] * (n - 3)
        if n > 3:  # the mask [..., L, S]: its query rows, unless it broadcasts along them
            req[3] = "mask"
        return req
    return None


def _requests(node, axis: int, index: int):
    """The per-input requests of ``node`` (see _rule), broadcast inputs resolved."""
    req = _rule(node, axis)
    if req is None:
        return None
    r = node.get_output_partial_shape(0).rank.get_length()
    out = []
    for port, q in enumerate(req):
        if q is None:
            q = _row_of_input(node, port, axis, r, index)
        elif q == "mask":
            mr = node.get_input_partial_shape(port).rank
            q = FULL if mr.is_dynamic or mr.get_length() < 2 else _row_of_input(
                node, port, mr.get_length() - 2, mr.get_length(), index)
        out.append(q)
    return out


def _merge(a, b):
    if a is None:
        return b
    return a if a == b else FULL


def _key(output):
    return (output.get_node().get_instance_id(), output.get_index())


def _matmul_ops(model, shapes: list | None) -> int:
    """Multiply-adds x 2 of every MatMul and of attention's two products, at the input ``shapes`` (per input, in
    order) when given, else with each dynamic dim counted as 1."""
    if shapes is not None:
        import openvino as ov

        model = model.clone()
        model.reshape({port: ov.PartialShape(list(s)) for port, s in zip(model.inputs, shapes)})
    total = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() == "ScaledDotProductAttention":  # its two products: Q K^T and P V
            q, v = op.get_input_partial_shape(0), op.get_input_partial_shape(2)
            s = op.get_input_partial_shape(1)
            if not any(x.rank.is_dynamic for x in (q, v, s)):
                size = 1
                for d in list(q)[:-1] + [s[-2]]:
                    size *= d.get_length() if d.is_static else 1
                e, ev = (x[-1].get_length() if x[-1].is_static else 1 for x in (q, v))
                total += 2 * size * (e + ev)
            continue
        if op.get_type_name() != "MatMul":
            continue
        out = op.get_output_partial_shape(0)
        a = op.get_input_partial_shape(0)
        if out.rank.is_dynamic or a.rank.is_dynamic:
            continue
        k = a[-2 if op.get_attributes().get("transpose_a") else -1]
        size = 1
        for d in list(out) + [k]:
            size *= d.get_length() if d.is_static else 1
        total += 2 * size
    return total


def prune(model, shapes: list | None = None) -> dict:
    """Rewrites ``model`` (an ``ov.Model``) in place so that ops whose outputs are read one row at a time compute
    that row only. Returns {"rewritten": n, "selections": k, "matmul_ops_before": x, "matmul_ops_after": y}, the
    MatMul and attention work counted at the input ``shapes`` (one per input; default: dynamic dims as 1)."""
    from openvino import opset8 as ops

    before = _matmul_ops(model, shapes)
    order = list(model.get_ordered_ops())
    want: dict = {}       # output key -> (axis, index) | FULL, merged over its consumers
    asks: dict = {}       # node id -> per input (axis, index) | FULL, for the nodes that will be rewritten
    selectors = {}
    for node in reversed(order):
        nid = node.get_instance_id()
        sel = _selector(node)
        if sel is not None:
            selectors[nid] = sel
            per = [sel] + [FULL] * (node.get_input_size() - 1)
        else:
            per = None
            got = want.get(_key(node.output(0))) if node.get_output_size() == 1 else None
            if got not in (None, FULL):
                axis, index = got
                req = _requests(node, axis, index)
                if req is not None:
                    per = [FULL if q == FULL else (q, index) for q in req]
                    asks[nid] = per
            if per is None:
                per = [FULL] * node.get_input_size()
        for port, q in enumerate(per):
            src = node.input_value(port)
            want[_key(src)] = _merge(want.get(_key(src)), q)
    # the nodes in asks compute only the row: every consumer of their output reads that same row
    sliced: dict = {}

    def computes_row(src, axis: int, index: int) -> bool:
        return src.get_node().get_instance_id() in asks and want.get(_key(src)) == (axis, index)

    def row_source(src, axis: int, index: int):
        """The rows of ``src``: itself when its producer now computes rows, else a one-row Slice (shared)."""
        if computes_row(src, axis, index):
            return src
        k = (_key(src), axis, index)
        if k not in sliced:
            stop = INT64_MAX if index == -1 else index + 1
            sliced[k] = ops.slice(src, np.array([index], np.int64), np.array([stop], np.int64),
                                  np.array([1], np.int64), np.array([axis], np.int64)).output(0)
        return sliced[k]

    rewritten = 0
    for node in order:
        nid = node.get_instance_id()
        if nid in selectors:
            if computes_row(node.input_value(0), *selectors[nid]):  # it now picks row 0 of a one-row tensor
                idx = node.input_value(1)
                zero = np.zeros(idx.get_partial_shape().to_shape(), idx.get_element_type().to_dtype())
                node.input(1).replace_source_output(ops.constant(zero).output(0))
                node.validate_and_infer_types()
            continue
        if nid not in asks:
            continue
        ins = [node.input_value(p) if q == FULL else row_source(node.input_value(p), *q)
               for p, q in enumerate(asks[nid])]
        if node.get_type_name() == "Reshape":  # a new target shape: the axis is 1 long now
            axis = want[_key(node.output(0))][0]
            out = node.get_output_partial_shape(0)
            shape = [0] * axis + [1] + [d.get_length() if d.is_static else -1 for d in list(out)[axis + 1:]]
            new = ops.reshape(ins[0], np.array(shape, np.int64), special_zero=True)
            new.set_friendly_name(node.get_friendly_name())
            node.output(0).replace(new.output(0))
        else:  # in topological order, so each node sees its inputs' new shapes
            for port, src in enumerate(ins):
                node.input(port).replace_source_output(src)
            node.validate_and_infer_types()
        rewritten += 1
    model.validate_nodes_and_infer_types()
    return {"rewritten": rewritten, "selections": len(selectors), "matmul_ops_before": before,
            "matmul_ops_after": _matmul_ops(model, shapes)}
