"""Where the time goes: a per-operator profile of one artifact, by op class, against this machine's ceiling.

    profile(artifact, runtime, batch, threads=0, ...) -> dict      # in this process
    markdown(prof) -> str, tables(prof) -> (class rows, top rows)  # the report's "Where the time goes"
    python -m perf.opprofile MODEL_DIR_OR_FILE --batch N [--spec S --model M] [--json OUT]

The session is the served one (``generator.serve.runtimes`` with the config's settings, as ``perf.baseline``), with
the runtime's own profiler on: ONNX Runtime's ``enable_profiling`` (the JSON trace: one "Node" event per
executed kernel with its ``op_name``, duration and input/output shapes) or OpenVINO's ``PERF_COUNT``
(``get_profiling_info()`` after each call: node type, ``exec_type`` -- the kernel, e.g. ``brgemm_avx2_I8``
or ``ref`` -- and ``real_time``; the runtime model says which original layers each executed node fused).
The first ``warmup`` runs are discarded; then at least ``runs`` calls and at least ``min_s`` seconds.

Op classes: MatMul/GEMM, attention (fused attention ops, Softmax, and products of two activations -- a
MatMul whose both operands are batched, rank >= 3: QK^T and AV; weights are 2-D), convolution,
normalisation, activation, quantize (Q/DQ, DynamicQuantizeLinear, reorders of int8 data) and other.
FLOPs per executed node come from its shapes with ``perf.probe.op_flops`` (the one formula per op):
ONNX Runtime's trace carries the shapes; where a pre-packed weight is missing from it, the ONNX graph's node
of the same name (ONNX shape inference at the profiled batch) fills in. OpenVINO nodes take the FLOPs of the
original layers they fused, from the model reshaped to the executed batch. Each class's GFLOP/s is divided
by the ceiling of its precision (``perf.probe.peak_for``, the GEMM probe): what is left per class.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from . import probe

ROOT = Path(__file__).resolve().parent.parent
CLASSES = ("gemm", "attention", "conv", "norm", "activation", "quantize", "other")
LABELS = {"gemm": "MatMul/GEMM", "attention": "attention", "conv": "convolution", "norm": "normalisation",
          "activation": "activation", "quantize": "quantize/dequantize", "other": "other"}
_CONV = {"Conv", "FusedConv", "NchwcConv", "ConvInteger", "QLinearConv", "ConvTranspose", "Convolution",
         "GroupConvolution", "ConvolutionBackpropData", "Deconvolution"}
_ATTN = probe.ATTENTION_OPS | {"GroupQueryAttention", "PackedAttention", "Softmax", "SoftMax", "LogSoftmax",
                               "QLinearSoftmax"}
_NORM = {"LayerNormalization", "SkipLayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization",
         "SkipSimplifiedLayerNormalization", "BatchNormalization", "InstanceNormalization", "GroupNormalization",
         "EmbedLayerNormalization", "LpNormalization", "MVN", "NormalizeL2", "LRN", "RMS", "BatchNormInference"}
_ACT = {"Relu", "Gelu", "FastGelu", "BiasGelu", "QuickGelu", "Sigmoid", "Tanh", "Erf", "HardSigmoid", "HardSwish",
        "LeakyRelu", "Elu", "Selu", "Clip", "Softplus", "Mish", "Swish", "SiLU", "PRelu", "HSwish", "HSigmoid",
        "Clamp", "Exp", "BiasSoftmax", "QLinearLeakyRelu", "QLinearSigmoid"}
_QUANT = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "FakeQuantize", "Convert"}
_INT8 = {"MatMulInteger", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul", "QGemm", "QLinearConv",
         "ConvInteger", "QAttention"}
NOT_PROFILED = {
    "torchscript": "TorchScript: no per-operator profile here (torch.profiler reports aten ops of the scripted "
                   "graph, not the served runtime's kernels; profile the ONNX variant of the same model)",
    "aoti": "AOTInductor: the compiled .so runs fused generated kernels with no per-operator counters",
    "tensorrt": "TensorRT: needs a GPU and TensorRT (trtexec --dumpProfile); neither is on this machine",
    "python": "python backend: runs user code, there is no operator graph to profile",
}


def _is_mm(op: str) -> bool:  # OpenVINO has FullyConnected{,Compressed,Quantized,QuantizedLegacy}
    return op in probe.MATMUL_LIKE or op.startswith("FullyConnected")


def op_class(op: str, ins: list | None = None) -> str:
    """The class of one (executed or graph) op; ``ins``: its input shapes (None where unknown)."""
    if _is_mm(op):
        ins = ins or []
        batched = [s for s in ins[1:] if s is not None and len(s) >= 3]
        return "attention" if ins and ins[0] is not None and len(ins[0]) >= 3 and batched else "gemm"
    for cls, names in (("conv", _CONV), ("attention", _ATTN), ("norm", _NORM), ("activation", _ACT),
                       ("quantize", _QUANT)):
        if op in names:
            return cls
    return "other"


# ------------------------------------------------------------------------------------------- ONNX Runtime


def _trace_shapes(arg) -> list:
    return [list(next(iter(d.values()))) if d else None for d in (arg or [])]


def _ort_nodes(events: list, skip_runs: int) -> tuple[list[list[dict]], list[float]]:
    """The trace's Node events grouped per run (a run is a ``model_run`` Session event), first ``skip_runs``
    runs dropped; and each kept run's own duration (ms)."""
    runs = sorted((e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"),
                  key=lambda e: e["ts"])[skip_runs:]
    nodes = [e for e in events if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time")]
    out = []
    for r in runs:
        lo, hi = r["ts"], r["ts"] + r["dur"]
        out.append([e for e in nodes if lo <= e["ts"] <= hi])
    return out, [r["dur"] / 1000.0 for r in runs]


def _ort_records(per_run: list[list[dict]], graph: dict) -> list[dict]:
    """One record per executed node (mean ms per run), with op, class, FLOPs and precision."""
    acc: dict[str, dict] = {}
    for run in per_run:
        for e in run:
            name = e["name"][: -len("_kernel_time")]
            a = e.get("args", {})
            rec = acc.setdefault(name, {"name": name, "op": a.get("op_name", "?"), "kernel": a.get("provider", "").replace("ExecutionProvider", ""),
                                        "us": 0.0, "ins": _trace_shapes(a.get("input_type_shape")),
                                        "outs": _trace_shapes(a.get("output_type_shape")),
                                        "dtype": next(iter((a.get("input_type_shape") or [{}])[0]), "float")})
            rec["us"] += float(e["dur"])
    n = max(len(per_run), 1)
    out = []
    for rec in acc.values():
        flops = probe.op_flops(rec["op"], rec["ins"], rec["outs"])
        g = graph.get(rec["name"])
        if flops is None and g is not None:  # a pre-packed weight is not in the trace: the graph's shapes
            flops = g["flops"]
        counts = rec["op"] in probe.MATMUL_LIKE or rec["op"] in probe.CONV_LIKE or rec["op"] in probe.ATTENTION_OPS
        ins = rec["ins"] or (g["inputs"] if g else [])
        # ORT's NCHWc layout (its nodes are named <output>_nchwc) rounds channels up to the CPU's block (8 with
        # AVX2, 16 with AVX-512): the executed shapes count the padding, not the model's work
        padded = rec["name"].endswith("_nchwc") and rec["op"] in probe.CONV_LIKE and flops is not None
        out.append({"name": rec["name"], "op": rec["op"], "class": op_class(rec["op"], ins), "kernel": rec["kernel"],
                    "ms": rec["us"] / 1000.0 / n, "flops": flops, "uncounted": counts and flops is None,
                    "padded": padded,
                    "precision": "int8" if rec["op"] in _INT8 else
                                 {"float16": "fp16", "bfloat16": "bf16"}.get(rec["dtype"], "fp32")})
    return out


def _profile_ort(artifact: Path, feeds: dict, settings: dict, in_names, out_names, warmup: int, runs: int,
                 min_s: float, graph: dict):
    from generator.serve.runtimes import open_session

    with tempfile.TemporaryDirectory(prefix="tritongen-ortprof-") as tmp:
        session = open_session("onnxruntime", artifact, in_names, out_names,
                               {**settings, "profile_file_prefix": str(Path(tmp) / "ort")})
        arrays = [feeds[n] for n in in_names]
        wall = _calls(lambda: session(arrays), warmup, runs, min_s)
        trace = json.loads(Path(session.session.end_profiling()).read_text())
    per_run, run_ms = _ort_nodes(trace, warmup)
    return _ort_records(per_run, graph), wall, (float(np.mean(run_ms)) if run_ms else None), len(per_run), session


# ------------------------------------------------------------------------------------------- OpenVINO


def _ov_layers(artifact: Path, feeds: dict) -> dict:
    """Friendly name -> {op, flops, class} of the model's layers, reshaped to the executed shapes."""
    import openvino as ov

    model = ov.Core().read_model(str(artifact))
    shapes = {}
    for port in model.inputs:
        hit = next((n for n in port.get_names() if n in feeds), None)
        if hit is not None:
            shapes[port] = ov.PartialShape(list(feeds[hit].shape))
    try:
        model.reshape(shapes)
    except Exception:  # a model that cannot be reshaped keeps its dynamic dims: no FLOPs from it
        return {}
    out = {}
    for op in model.get_ordered_ops():
        def dims(ps):
            return [d.get_length() for d in ps] if ps.is_static else None

        ins = [dims(op.input(i).get_partial_shape()) for i in range(op.get_input_size())]
        outs = [dims(op.output(i).get_partial_shape()) for i in range(op.get_output_size())]
        t = op.get_type_name()
        out[op.get_friendly_name()] = {"op": t, "flops": probe.op_flops(t, ins, outs), "class": op_class(t, ins),
                                       "from": [op.input(i).get_source_output().get_node().get_friendly_name()
                                                for i in range(op.get_input_size())]}
    return out


def _ov_origins(acc: dict, fused: dict, layers: dict) -> dict:
    """Executed node -> the model's layers it runs. The runtime model names what each node fused; names the
    plugin made up ("x/DequantizationMultiply") fall back to their longest prefix that is a layer, and a
    MatMul/Convolution that is no executed node itself (absorbed, e.g. under its bias Add) goes to the node that
    names its consumer."""
    def key(x):
        # layer names hold "/" themselves ("blocks.0.attn/aten::.../MatMul"): strip the made-up parts from the right
        while x and x not in layers:
            x = x.rpartition("/")[0]
        return x or None

    claimed: set = set()
    out = {}
    for name in acc:
        got = []
        for k in [key(x) for x in fused.get(name, [name])]:
            for cand in [k] + (layers[k]["from"] if k else []):
                if cand and cand in layers and cand not in claimed and (cand == k or (
                        cand not in acc and layers[cand]["flops"])):
                    claimed.add(cand)
                    got.append(layers[cand])
        out[name] = got
    return out


def _ov_precision(exec_type: str) -> str:
    e = exec_type.lower()
    return "int8" if ("i8" in e or "u8" in e) else "bf16" if "bf16" in e else "fp16" if "f16" in e else "fp32"


def _profile_ov(artifact: Path, feeds: dict, settings: dict, in_names, out_names, warmup: int, runs: int,
                min_s: float, input_dims, max_batch_size: int):
    from generator.serve.runtimes import open_session

    session = open_session("openvino", artifact, in_names, out_names, {**settings, "PERF_COUNT": "YES"},
                           input_dims=input_dims, max_batch_size=max_batch_size)
    arrays = [feeds[n] for n in in_names]
    mbs = session.max_batch_size
    if mbs > 0 and not session.pad and arrays and arrays[0].shape[0] != mbs:  # the served model refuses other batches
        arrays = [np.resize(a, (mbs, *a.shape[1:])) for a in arrays]
    acc: dict[str, dict] = {}
    kept = [0]

    def once():
        session(arrays)
        kept[0] += 1
        if kept[0] <= warmup:
            return
        for p in session.request.get_profiling_info():
            if str(p.status).endswith("EXECUTED") and not str(p.status).endswith("NOT_EXECUTED"):
                rec = acc.setdefault(p.node_name, {"name": p.node_name, "op": p.node_type, "kernel": p.exec_type,
                                                   "us": 0.0})
                rec["us"] += p.real_time.total_seconds() * 1e6

    wall = _calls(once, warmup, runs, min_s)
    n_runs = max(kept[0] - warmup, 1)
    executed = dict(feeds)
    if session.max_batch_size > 0:  # the served OpenVINO model runs every call at max_batch_size (padded)
        executed = {k: np.zeros((session.max_batch_size, *v.shape[1:]), v.dtype) for k, v in feeds.items()}
    layers = _ov_layers(artifact, executed)
    fused = {}
    for op in session.compiled.get_runtime_model().get_ordered_ops():
        names = op.get_rt_info()["originalLayersNames"].astype(str)
        fused[op.get_friendly_name()] = [x for x in names.split(",") if x] or [op.get_friendly_name()]
    origins = _ov_origins(acc, fused, layers)
    out = []
    for rec in acc.values():
        origin = origins[rec["name"]]
        flops = [o["flops"] for o in origin if o["flops"] is not None]
        cls = op_class(rec["op"])
        heavy = [c for c in ("attention", "conv", "gemm") if any(o["class"] == c for o in origin)]
        if heavy:  # a node that fused a GEMM/conv/attention layer (with its bias, activation, Q/DQ) is that class
            cls = heavy[0]
        elif cls == "other" and origin:  # Eltwise, Subgraph...: the class of what it fused
            cls = next((c for c in ("norm", "activation", "quantize") if any(o["class"] == c for o in origin)), cls)
        if rec["op"] in ("Reorder", "Convert") and _ov_precision(rec["kernel"]) == "int8":
            cls = "quantize"
        counts = cls in ("gemm", "attention", "conv") and rec["op"] not in ("Softmax", "SoftMax")
        out.append({"name": rec["name"], "op": rec["op"], "class": cls, "kernel": rec["kernel"],
                    "ms": rec["us"] / 1000.0 / n_runs, "flops": sum(flops) if flops else None,
                    "uncounted": counts and not flops, "precision": _ov_precision(rec["kernel"])})
    batch = next(iter(executed.values())).shape[0] if executed else None
    return out, wall, None, n_runs, session, batch


# ------------------------------------------------------------------------------------------- the profile


def _calls(fn, warmup: int, runs: int, min_s: float, max_runs: int = 200) -> list[float]:
    """``warmup`` calls, then at least ``runs`` calls and ``min_s`` seconds; the timed calls' latencies (ms)."""
    for _ in range(warmup):
        fn()
    lat: list[float] = []
    t_end = time.perf_counter() + min_s
    while len(lat) < max_runs and (len(lat) < runs or time.perf_counter() < t_end):
        t = time.perf_counter()
        fn()
        lat.append((time.perf_counter() - t) * 1000.0)
    return lat


def _graph(artifact: Path, feeds: dict) -> dict:
    """ONNX graph nodes by name (shape inference at the feeds' shapes); {} when it cannot be inferred."""
    if artifact.suffix != ".onnx":
        return {}
    try:
        return {n["name"]: n for n in probe.graph_nodes(artifact, {k: list(v.shape) for k, v in feeds.items()})}
    except Exception:
        return {}


def profile(artifact, runtime: str, batch: int, threads: int = 0, *, feeds: dict | None = None,
            settings: dict | None = None, in_names=None, out_names=None, peaks: dict | None = None,
            warmup: int = 2, runs: int = 3, min_s: float = 1.0, input_dims=None, max_batch_size: int = 0) -> dict:
    """Profile ``artifact`` on ``runtime`` (onnxruntime | openvino) at ``batch``; ``threads`` > 0 overrides the
    settings' intra-op threads. ``feeds`` default to random tensors from the artifact's own inputs; ``settings``
    (``generator.serve.runtimes``' keys) default to the config beside the artifact (``perf.baseline.served_settings``).
    ``peaks``: GFLOP/s per precision (the GEMM probe's ``peak_gflops``). Returns the profile record."""
    from generator.serve.runtimes import with_threads

    artifact = Path(artifact)
    if runtime not in ("onnxruntime", "openvino"):
        return {"runtime": runtime, "skipped": NOT_PROFILED.get(runtime, f"{runtime}: no per-operator profiler here")}
    if settings is None:
        from .baseline import served_settings

        served = served_settings(runtime, artifact, threads, {})
        settings, input_dims, max_batch_size = served["settings"], served["input_dims"], served["max_batch_size"]
    if threads > 0:
        settings = with_threads(runtime, settings, threads)
    feeds = feeds or artifact_feeds(artifact, batch)
    in_names = list(in_names or feeds)
    out_names = list(out_names or [])
    graph = _graph(artifact, feeds)
    executed = batch
    if runtime == "onnxruntime":
        if not out_names:
            out_names = [o.name for o in _onnx_outputs(artifact)]
        nodes, wall, run_ms, n, session = _profile_ort(artifact, feeds, settings, in_names, out_names, warmup, runs,
                                                       min_s, graph)
    else:
        if not out_names:
            import openvino as ov

            out_names = [o.get_any_name() for o in ov.Core().read_model(str(artifact)).outputs]
        nodes, wall, run_ms, n, session, executed = _profile_ov(artifact, feeds, settings, in_names, out_names,
                                                                warmup, runs, min_s, input_dims, max_batch_size)
    scale = (executed or batch) / batch
    by_class: dict[str, int] = {}
    for g in graph.values():
        if g["flops"]:
            c = op_class(g["op"], g["inputs"])
            by_class[c] = by_class.get(c, 0) + int(g["flops"] * scale)
    return summarise(nodes, peaks or {}, graph_classes=by_class, runtime=runtime, artifact=str(artifact), batch=batch, executed_batch=executed,
                     runs=n, warmup_runs=warmup, wall_ms=float(np.mean(wall)), run_ms=run_ms,
                     session=session.summary(),
                     graph_gflop=sum(g["flops"] or 0 for g in graph.values() if g["op"] in probe.GEMM_OPS
                                     or g["op"] in probe.ATTENTION_OPS) / 1e9 * (executed / batch) if graph else None)


def summarise(nodes: list[dict], peaks: dict, graph_classes: dict | None = None, **meta) -> dict:
    """Per-class ms, share, GFLOP, GFLOP/s and share of the class's ceiling; the top-10 nodes; notes. A class
    with an executed node whose FLOPs its shapes cannot give takes the ONNX graph's FLOPs of that class."""
    ops_ms = sum(r["ms"] for r in nodes)
    classes = {}
    for cls in CLASSES:
        mine = [r for r in nodes if r["class"] == cls]
        if not mine:
            continue
        ms = sum(r["ms"] for r in mine)
        flops = sum(r["flops"] or 0 for r in mine)
        uncounted = sum(bool(r.get("uncounted")) for r in mine)
        padded = sum(bool(r.get("padded")) for r in mine)
        source = "graph" if (uncounted or padded) and (graph_classes or {}).get(cls) else "executed"
        flops = graph_classes[cls] if source == "graph" else flops
        by_prec: dict[str, float] = {}
        for r in mine:
            if r["flops"] or r.get("uncounted"):
                by_prec[r["precision"]] = by_prec.get(r["precision"], 0) + (r["flops"] or 1)
        prec = max(by_prec, key=by_prec.get) if by_prec else None
        ceil_prec, ceil = probe.peak_for(prec, peaks) if prec else (None, None)
        gflops = flops / 1e9 / (ms / 1000.0) if flops and ms else None
        classes[cls] = {"label": LABELS[cls], "ms": ms, "share": ms / ops_ms if ops_ms else None, "nodes": len(mine),
                        "flops": int(flops), "ops": sorted({r["op"] for r in mine}),
                        "gflop": flops / 1e9 if flops else None, "gflops": gflops, "precision": prec,
                        "ceiling_precision": ceil_prec, "ceiling_gflops": ceil,
                        "ceiling_share": gflops / ceil if gflops and ceil else None,
                        "uncounted_nodes": uncounted, "padded_nodes": padded, "flops_from": source}
    top = sorted(nodes, key=lambda r: -r["ms"])[:10]
    top = [{**{k: r[k] for k in ("name", "op", "class", "kernel", "ms", "precision")},
            "share": r["ms"] / ops_ms if ops_ms else None,
            "gflops": r["flops"] / 1e9 / (r["ms"] / 1000.0) if r["flops"] and r["ms"] else None} for r in top]
    counted = sum(c["flops"] for c in classes.values()) / 1e9  # the classes' (graph FLOPs where they took them)
    out = {**meta, "ops_ms": ops_ms, "classes": classes, "top": top, "counted_gflop": counted, "notes": []}
    if meta.get("executed_batch") and meta.get("batch") and meta["executed_batch"] != meta["batch"]:
        out["notes"].append(f"the served OpenVINO model runs every call at max_batch_size {meta['executed_batch']} "
                            f"(batch {meta['batch']} zero-padded, or refused without ENABLE_BATCH_PADDING): the times and FLOPs are those of batch "
                            f"{meta['executed_batch']}")
    over = [c["label"] for c in classes.values() if (c["ceiling_share"] or 0) > 1]
    if over:
        out["notes"].append(f"{', '.join(over)} above 100% of the ceiling: the GEMM probe ran under load and "
                            "underestimates it; delete machine_probe.json and re-run on a quiet machine")
    for c in classes.values():
        if c["padded_nodes"]:
            out["notes"].append(f"{c['label']}: {c['padded_nodes']} node(s) ran in ONNX Runtime's NCHWc layout, which "
                                "pads channels to this CPU's vector block; " +
                                ("the class's FLOPs are the ONNX graph's (the model's work)" if c["flops_from"] == "graph"
                                 else "its FLOPs include that padding (a high bound)"))
        if c["uncounted_nodes"]:
            out["notes"].append(f"{c['label']}: {c['uncounted_nodes']} executed node(s) without the shapes to count "
                                "FLOPs from; " + ("the class's FLOPs are the ONNX graph's" if c["flops_from"] == "graph"
                                                  else "its GFLOP/s is a low bound"))
    return out


# ------------------------------------------------------------------------------------------- rendering


def _f(v, fmt="{:.1f}") -> str:
    return "-" if v is None else fmt.format(v)


def tables(prof: dict) -> tuple[list[list[str]], list[list[str]]]:
    """(class table, top-10 node table), header row first: for report.md / report.html."""
    cls = [["op class", "ms / run", "share", "GFLOP", "GFLOP/s", "ceiling GFLOP/s", "of ceiling"]]
    for c in prof.get("classes", {}).values():
        cls.append([c["label"], _f(c["ms"], "{:.2f}"), _f(c["share"], "{:.0%}"), _f(c["gflop"], "{:.2f}"),
                    _f(c["gflops"]), f"{_f(c['ceiling_gflops'], '{:.0f}')} {c['ceiling_precision'] or ''}".strip(),
                    _f(c["ceiling_share"], "{:.0%}")])
    top = [["node", "op", "class", "kernel", "ms / run", "share", "GFLOP/s"]]
    for r in prof.get("top", []):
        top.append([r["name"][-48:], r["op"], LABELS[r["class"]], r["kernel"] or "-", _f(r["ms"], "{:.2f}"),
                    _f(r["share"], "{:.0%}"), _f(r["gflops"])])
    return cls, top


def headline(prof: dict) -> str:
    """One sentence: what was profiled and how much of the wall time the ops account for."""
    if prof.get("skipped"):
        return f"not profiled: {prof['skipped']}"
    if prof.get("error"):
        return f"profile failed: {prof['error']}"
    run = f", the runtime's own run {prof['run_ms']:.1f} ms" if prof.get("run_ms") else ""
    g = prof.get("graph_gflop")
    return (f"{prof['runtime']} at batch {prof['batch']}, {prof['runs']} profiled runs after {prof['warmup_runs']} "
            f"discarded: the ops add up to {prof['ops_ms']:.1f} ms of {prof['wall_ms']:.1f} ms wall per call{run}; "
            f"{prof['counted_gflop']:.2f} GFLOP counted in the executed ops"
            + (f" (ONNX graph: {g:.2f} GFLOP)" if g else "") + ".")


def markdown(prof: dict, title: str = "") -> str:
    lines = [f"**{title}**: {headline(prof)}" if title else headline(prof), ""]
    if prof.get("classes"):
        for t in tables(prof):
            lines += ["| " + " | ".join(t[0]) + " |", "|" + "---|" * len(t[0])]
            lines += ["| " + " | ".join(r) + " |" for r in t[1:]] + [""]
    lines += [f"- {n}" for n in prof.get("notes", [])]
    return "\n".join(lines).rstrip() + "\n"


# ------------------------------------------------------------------------------------------- inputs, CLI


def _onnx_outputs(path: Path):
    import onnx

    return onnx.load(str(path), load_external_data=False).graph.output


def artifact_feeds(artifact: Path, batch: int) -> dict:
    """Random feeds from the artifact's own inputs: a symbolic first dim is the batch; another symbolic dim is
    a user error (give --spec and --model)."""
    if artifact.suffix == ".onnx":
        import onnx
        from onnx import helper

        g = onnx.load(str(artifact), load_external_data=False).graph
        inits = {i.name for i in g.initializer}
        sig = [(i.name, [d.dim_value if d.HasField("dim_value") else None for d in i.type.tensor_type.shape.dim],
                helper.tensor_dtype_to_np_dtype(i.type.tensor_type.elem_type)) for i in g.input if i.name not in inits]
    else:
        import openvino as ov

        m = ov.Core().read_model(str(artifact))
        sig = [(p.get_any_name(), [d.get_length() if d.is_static else None for d in p.get_partial_shape()],
                p.get_element_type().to_dtype()) for p in m.inputs]
    rng = np.random.default_rng(7)
    feeds = {}
    for name, dims, dtype in sig:
        dims = [batch if (i == 0 and d is None) else d for i, d in enumerate(dims)]
        if None in dims:
            from generator.errors import UserError

            raise UserError(f"{artifact.name}: input '{name}' has a dynamic dim besides the batch; give --spec and "
                            "--model so the spec's opt dims fill it in")
        feeds[name] = (rng.standard_normal(dims).astype(dtype) if np.issubdtype(dtype, np.floating)
                       else np.ones(dims, dtype))
    return feeds


def _resolve(path: Path) -> tuple[Path, str]:
    """(artifact, runtime) of a file or a Triton model folder (its config's platform/backend)."""
    if path.is_file():
        return path, "openvino" if path.suffix == ".xml" else "onnxruntime"
    from generator.tables import backends
    from generator.errors import UserError
    from generator.config.validate import parse_config

    if not (path / "config.pbtxt").is_file():
        raise UserError(f"{path}: neither a model file (.onnx, .xml) nor a model folder with config.pbtxt")
    cfg, problem = parse_config((path / "config.pbtxt").read_text(), f"{path.name}/config.pbtxt")
    if problem:
        raise UserError(problem)
    params = {k: v.string_value for k, v in cfg.parameters.items()}
    runtime = params.get("runtime") or backends.runtime_for(cfg.platform, cfg.backend) or "python"
    versions = sorted((p for p in path.iterdir() if p.is_dir() and p.name.isdigit()), key=lambda p: int(p.name))
    for v in reversed(versions):
        for pattern in ([params["artifact"]] if params.get("artifact") else []) + ["*.onnx", "*.xml", "*.pt", "*.pt2"]:
            hits = sorted(v.glob(pattern))
            if hits:
                return hits[0], runtime
    return path, runtime


def run_child(artifact: Path, batch: int, out_json: Path, spec: Path | None = None, model: str | None = None,
              peaks: dict | None = None, timeout_s: float = 300.0) -> dict:
    """``profile`` in a fresh interpreter (no torch threads beside the runtime's); the record or {"error"}."""
    argv = [sys.executable, "-m", "perf.opprofile", str(artifact), "--batch", str(batch), "--json", str(out_json),
            "--quiet"] + (["--spec", str(spec), "--model", model] if spec and model else [])
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    if peaks:
        env["TRITONGEN_PEAKS"] = json.dumps(peaks)
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"the profile did not finish within {timeout_s:.0f} s"}
    if proc.returncode != 0 or not out_json.is_file():
        return {"error": ((proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1])[:300]}
    return {**json.loads(out_json.read_text()), "command": " ".join(argv)}


def for_winners(best: dict, spec_path: Path, peaks: dict, run_dir: Path, log=print) -> dict:
    """``best``: spec model -> (Triton name, runtime, artifact, batch). Each winner profiled in its own process."""
    out = {}
    for model, (name, runtime, artifact, batch) in best.items():
        if runtime not in ("onnxruntime", "openvino") or artifact is None:
            out[model] = {"triton_name": name, "runtime": runtime,
                          "skipped": NOT_PROFILED.get(runtime, f"{runtime}: no per-operator profiler here")}
            continue
        log(f"per-operator profile {name} at batch {batch}")
        got = run_child(Path(artifact), batch, Path(run_dir) / f"{name}_opprofile.json", spec_path, model, peaks)
        out[model] = {"triton_name": name, **got}
    return out


def _spec_feeds(spec: Path, model_name: str, batch: int):
    from generator.loading.inputs import make_inputs
    from generator.spec import load_spec

    from .loadgen import spec_point

    ms = load_spec(spec).model(model_name)
    b = batch if ms.max_batch_size <= 0 else min(batch, ms.max_batch_size)
    return make_inputs(ms, spec_point(ms, b), seed=7), [t.name for t in ms.inputs], [t.name for t in ms.outputs]


REFUSERS = ("onnxruntime", "openvino", "onnx", "google")  # modules whose exceptions mean "this file is not runnable"


def main(argv: list[str] | None = None) -> int:
    from generator.errors import UserError

    p = argparse.ArgumentParser(prog="python -m perf.opprofile", description=__doc__.split("\n")[0])
    p.add_argument("path", type=Path, help="a model file (.onnx, .xml) or a Triton model folder (config.pbtxt)")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (default: the served config's)")
    p.add_argument("--runtime", choices=("onnxruntime", "openvino"), default=None)
    p.add_argument("--spec", type=Path, default=None, help="with --model: inputs at the spec's opt dims")
    p.add_argument("--model", default=None)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--min-s", type=float, default=1.0)
    p.add_argument("--json", type=Path, default=None, help="write the profile record here")
    p.add_argument("--probe-cache", type=Path, default=Path("perf/results/machine_probe.json"))
    p.add_argument("--quiet", action="store_true")
    a = p.parse_args(argv)
    try:
        if not a.path.exists():
            raise UserError(f"{a.path}: no such file or folder")
        if a.batch < 1:
            raise UserError(f"--batch {a.batch}: give a positive batch size")
        artifact, runtime = _resolve(a.path)
        runtime = a.runtime or runtime
        feeds = in_names = out_names = None
        if a.spec and a.model:
            feeds, in_names, out_names = _spec_feeds(a.spec, a.model, a.batch)
        peaks = json.loads(os.environ["TRITONGEN_PEAKS"]) if os.environ.get("TRITONGEN_PEAKS") else \
            probe.machine_peak(a.probe_cache.resolve()).get("peak_gflops", {})
        prof = profile(artifact, runtime, a.batch, a.threads, feeds=feeds, in_names=in_names, out_names=out_names,
                       peaks=peaks, runs=a.runs, min_s=a.min_s)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except Exception as e:  # the runtime or ONNX refused the file: one line that names it, not a traceback
        if not (isinstance(e, RuntimeError) or type(e).__module__.split(".")[0] in REFUSERS):
            raise
        why = next((ln.strip() for ln in reversed(str(e).splitlines()) if ln.strip()), type(e).__name__)
        print(f"error: {a.path}: cannot be loaded or run for profiling ({type(e).__name__}: {why[:200]}); "
              "check that it is a model file the runtime reads (tritongen build writes them)", file=sys.stderr)
        return 1
    if a.json:
        a.json.write_text(json.dumps(prof, indent=2) + "\n")
    if not a.quiet:
        print(markdown(prof, f"{a.path.name}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
