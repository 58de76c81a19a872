"""The machine's ceiling and each model's work: a GEMM probe and an ONNX FLOP counter.

``machine_peak()`` times square GEMMs (n=2048) once per machine (cached as JSON) in a subprocess, all cores:
fp32 with numpy and torch; bf16 with torch when the CPU has ``avx512_bf16`` (or AMX); int8 with
``torch._int_mm`` and ONNX Runtime's ``MatMulInteger`` when they run. The best of each precision is the
ceiling that a variant's achieved FLOP/s is divided by.

``count_flops(onnx_path, batch)`` counts multiply-adds as 2 FLOPs in MatMul / Gemm / Conv (and their
integer and QLinear forms; ``op_flops`` is the one formula per op, also used on ONNX Runtime's and OpenVINO's
executed ops by ``perf.opprofile``) with shapes from ONNX shape inference at a concrete batch and the spec's ``opt``
dims. Elementwise ops, softmax and normalisation are not counted: for ViT and CNNs they are < 2 % of
the FLOPs, and they are not what the GEMM ceiling measures.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
GEMM_OPS = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "Conv", "ConvInteger", "QLinearConv"}


# ------------------------------------------------------------------------------------------- FLOPs


def _dims(vi) -> list | None:
    t = vi.type.tensor_type
    if not t.HasField("shape"):
        return None
    out = []
    for d in t.shape.dim:
        if d.HasField("dim_value"):
            out.append(d.dim_value)
        else:
            return None
    return out


def graph_nodes(onnx_path: str | os.PathLike, input_shapes: dict[str, list[int]]) -> list[dict]:
    """Every node of the graph with its input/output shapes from ONNX shape inference at ``input_shapes``
    (None where unknown) and its FLOPs (``op_flops``; None for ops without a formula or unknown shapes)."""
    import onnx

    model = onnx.load(str(onnx_path), load_external_data=False)
    inits = {i.name: list(i.dims) for i in model.graph.initializer}
    for inp in model.graph.input:
        if inp.name in input_shapes:
            shape = inp.type.tensor_type.shape
            del shape.dim[:]
            for v in input_shapes[inp.name]:
                shape.dim.add().dim_value = int(v)
    # Exporters store value_info with symbolic dims ("s0"); inference keeps what is there, so start clean.
    del model.graph.value_info[:]
    for out in model.graph.output:
        out.type.tensor_type.ClearField("shape")
    # Shape inference needs the weights' shapes only; drop their data to keep memory small.
    # Small ones (Reshape targets, axes) stay: shape inference reads their values.
    for init in model.graph.initializer:
        if int(np.prod(init.dims)) <= 64:
            continue
        init.ClearField("raw_data")
        init.ClearField("float_data")
        init.ClearField("int32_data")
        init.ClearField("int64_data")
        init.ClearField("data_location")
        del init.external_data[:]
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    shapes: dict[str, list] = dict(inits)
    for vi in list(inferred.graph.value_info) + list(inferred.graph.input) + list(inferred.graph.output):
        d = _dims(vi)
        if d is not None:
            shapes[vi.name] = d
    out = []
    for i, node in enumerate(inferred.graph.node):
        ins = [shapes.get(n) if n else None for n in node.input]
        outs = [shapes.get(n) for n in node.output]
        out.append({"name": node.name or f"{node.op_type}_{i}", "op": node.op_type, "inputs": ins, "outputs": outs,
                    "flops": op_flops(node.op_type, ins, outs)})
    return out


def count_flops(onnx_path: str | os.PathLike, input_shapes: dict[str, list[int]]) -> dict:
    """``{"flops": total, "by_op": {op: flops}, "uncounted": [node names whose shapes were unknown]}``.

    ``input_shapes`` gives every graph input a concrete shape (batch and named dims filled in).
    """
    total, by_op, uncounted = 0, {}, []
    for n in graph_nodes(onnx_path, input_shapes):
        if n["op"] not in GEMM_OPS:
            continue
        if n["flops"] is None:
            uncounted.append(n["name"])
            continue
        total += n["flops"]
        by_op[n["op"]] = by_op.get(n["op"], 0) + n["flops"]
    return {"flops": int(total), "by_op": by_op, "uncounted": uncounted}


# ONNX, ONNX Runtime (com.microsoft, NCHWc) and OpenVINO op types by formula
MATMUL_LIKE = {"MatMul", "Gemm", "MatMulInteger", "QLinearMatMul", "FusedMatMul", "FusedGemm", "MatMulIntegerToFloat",
               "DynamicQuantizeMatMul", "QGemm", "FullyConnected"}
CONV_LIKE = {"Conv": 1, "FusedConv": 1, "NchwcConv": 1, "ConvInteger": 1, "QLinearConv": 3, "Convolution": 1}
ATTENTION_OPS = {"Attention", "QAttention", "MultiHeadAttention", "ScaledDotProductAttention"}


def matmul_k(a: list, out: list) -> int:
    """The reduction length of a (batched) matrix product: A is [..., M, K], or [..., K, M] when transposed."""
    if len(a) < 2 or len(out) < 2:
        return int(a[-1])
    return int(a[-1] if a[-2] == out[-2] else a[-2])


def op_flops(op: str, ins: list, outs: list) -> int | None:
    """FLOPs (2 per multiply-add) of one op from its input and output shapes (None: no formula, or a shape the
    formula needs is unknown). Shapes come from ONNX shape inference, ONNX Runtime's profiler or OpenVINO."""
    out = outs[0] if outs else None
    a = ins[0] if ins else None
    if out is None or a is None:
        return None
    if op in MATMUL_LIKE:
        return 2 * int(np.prod(out)) * matmul_k(a, out) if a else None
    if op in CONV_LIKE or op == "GroupConvolution":
        w = ins[CONV_LIKE.get(op, 1)] if len(ins) > CONV_LIKE.get(op, 1) else None
        if w is None or len(w) != len(out) + (op == "GroupConvolution"):  # a trace may leave a pre-packed weight out
            return None
        # weight [M, C/group, k1, ...] (OpenVINO's GroupConvolution: [G, M/G, C/G, k1, ...]): each output element
        # does C/group * prod(k) multiply-adds
        return 2 * int(np.prod(out)) * int(np.prod(w[2:] if op == "GroupConvolution" else w[1:]))
    if op == "ConvTranspose":
        w = ins[1] if len(ins) > 1 else None  # [C, M/group, k...]: each input element feeds M/group * prod(k) outputs
        return None if w is None else 2 * int(np.prod(a)) * int(np.prod(w[1:]))
    w = ins[1] if len(ins) > 1 else None
    if op == "QAttention" or (op == "Attention" and w is not None and len(w) == 2):
        # com.microsoft: input [B, S, Hin] x weights [Hin, 3H] (the QKV projection), then QK^T and AV
        if w is None or len(a) != 3:
            return None
        b, s, h_in = a
        return 2 * b * s * h_in * int(w[-1]) + 4 * b * s * s * int(out[-1])
    if op in ATTENTION_OPS:
        # ONNX Attention, MultiHeadAttention, OpenVINO SDPA: Q [B, S, H] / [B, heads, S, d], K [B, L, H] / [B, heads, L, d]
        if w is None or len(w) < 3:
            return None
        return 4 * int(np.prod(a)) * int(w[1] if len(w) == 3 else w[-2])
    return None


# ------------------------------------------------------------------------------------------- the GEMM probe


def cpu_flags() -> frozenset[str]:
    from generator.tables.isa import cpu_flags as flags

    return flags()


def cpu_name() -> str:
    from generator.tables.isa import cpu_name as name

    return name()


def _best(fn, flops: float, reps: int = 8, budget_s: float = 2.0) -> float:
    fn()
    best = float("inf")
    t_end = time.perf_counter() + budget_s
    for i in range(reps):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
        if time.perf_counter() > t_end and i >= 1:
            break
    return flops / best


def _ort_methods(m: dict, res: dict, rng, a, b, flops: float) -> None:
    """ONNX Runtime's int8 MatMulInteger and fp32 MatMul into ``m`` (a failure is a note)."""
    n = a.shape[0]
    try:
        import onnx
        import onnxruntime as ort
        from onnx import TensorProto, helper

        g = helper.make_graph(
            [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "mmi",
            [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n]),
             helper.make_tensor_value_info("B", TensorProto.INT8, [n, n])],
            [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])])
        mp = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        sess = ort.InferenceSession(mp.SerializeToString(), providers=["CPUExecutionProvider"])
        au = rng.integers(0, 255, (n, n), dtype=np.uint8)
        bi = rng.integers(-127, 127, (n, n), dtype=np.int8)
        m["int8/ort_MatMulInteger"] = _best(lambda: sess.run(None, {"A": au, "B": bi}), flops) / 1e9
        gf = helper.make_graph(
            [helper.make_node("MatMul", ["A", "B"], ["Y"])], "mm",
            [helper.make_tensor_value_info("A", TensorProto.FLOAT, [n, n]),
             helper.make_tensor_value_info("B", TensorProto.FLOAT, [n, n])],
            [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [n, n])])
        sf = ort.InferenceSession(helper.make_model(gf, opset_imports=[helper.make_opsetid("", 17)]).SerializeToString(),
                                  providers=["CPUExecutionProvider"])
        m["fp32/ort_MatMul"] = _best(lambda: sf.run(None, {"A": a, "B": b}), flops) / 1e9
        del onnx
    except Exception as e:
        res["notes"].append(f"ORT probe failed: {type(e).__name__}: {str(e)[:120]}")


def _probe(n: int = 2048) -> dict:
    """Runs in the subprocess: GFLOP/s (GOP/s for int8) per method."""
    res: dict = {"n": n, "cpu": cpu_name(), "cores": os.cpu_count(), "methods": {}, "notes": [],
                 "load_average": list(os.getloadavg())}
    flops = 2.0 * n ** 3
    rng = np.random.default_rng(0)
    a = rng.standard_normal((n, n), dtype=np.float32)
    b = rng.standard_normal((n, n), dtype=np.float32)
    m = res["methods"]
    m["fp32/numpy"] = _best(lambda: a @ b, flops) / 1e9
    cap = res["isa_cap"] = os.environ.get("ONEDNN_MAX_CPU_ISA")  # perf.isa: MLAS ignores it, bf16 needs AVX-512
    if cap:
        res["notes"].append(f"ISA capped to {cap}: ONNX Runtime's MatMul/MatMulInteger not probed (MLAS has no cap)")
    else:  # ORT first: torch's OpenMP threads keep spinning after use and slow ORT down
        _ort_methods(m, res, rng, a, b, flops)
    try:
        import torch

        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        with torch.inference_mode():
            m["fp32/torch"] = _best(lambda: ta @ tb, flops) / 1e9
            flags = cpu_flags()
            if ("avx512_bf16" in flags or "amx_bf16" in flags) and not cap:
                ba, bb = ta.bfloat16(), tb.bfloat16()
                m["bf16/torch"] = _best(lambda: ba @ bb, flops) / 1e9
            else:
                res["notes"].append(f"{'ISA capped to ' + cap if cap else 'no avx512_bf16/amx_bf16'}: bf16 not probed")
            try:
                ia = torch.randint(-127, 127, (n, n), dtype=torch.int8)
                ib = torch.randint(-127, 127, (n, n), dtype=torch.int8)
                m["int8/torch_int_mm"] = _best(lambda: torch._int_mm(ia, ib), flops) / 1e9
            except Exception as e:
                res["notes"].append(f"torch._int_mm does not run here: {type(e).__name__}: {str(e)[:120]}")
    except ImportError:
        res["notes"].append("torch not importable: torch probes skipped")
    peaks = {}
    for k, v in m.items():
        prec = k.split("/")[0]
        peaks[prec] = max(peaks.get(prec, 0.0), v)
    res["peak_gflops"] = peaks
    return res


def machine_peak(cache: Path | None = None, timeout_s: float = 180.0) -> dict:
    """The probe's result, from ``cache`` when it was made on this CPU, else measured (and cached)."""
    if cache is not None and cache.is_file():
        try:
            got = json.loads(cache.read_text())
            if got.get("cpu") == cpu_name() and got.get("cores") == os.cpu_count():
                got["cached"] = True
                return got
        except ValueError:
            pass
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run([sys.executable, "-m", "perf.probe"], capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd=str(ROOT))
        res = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("{")][-1])
    except (subprocess.TimeoutExpired, IndexError, ValueError) as e:
        return {"error": f"GEMM probe failed: {type(e).__name__}", "peak_gflops": {}}
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        cache.write_text(json.dumps(res, indent=2) + "\n")
    res["cached"] = False
    return res


def peak_for(precision: str, peaks: dict) -> tuple[str, float | None]:
    """The ceiling a variant of ``precision`` (fp32 | fp16 | bf16 | int8 | mixed) is compared with."""
    want = {"int8": "int8", "bf16": "bf16"}.get(precision, "fp32")
    if want in peaks:
        return want, peaks[want]
    return "fp32", peaks.get("fp32")


if __name__ == "__main__":
    print(json.dumps(_probe()))
