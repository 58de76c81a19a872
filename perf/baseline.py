"""In-process baselines: the same runtime without the server, and PyTorch eager fp32 of the original model.

Each baseline runs in its own subprocess (``python -m perf.baseline JSON``), so torch's OpenMP threads never
share a process with ONNX Runtime or OpenVINO (FACTS.md: they slowed ORT up to 4x).

**What "concurrency c" means in-process.** Triton's dynamic batcher turns ``c`` outstanding batch-1
requests into batches of up to ``c``; the best any server can do at concurrency ``c`` is therefore to run
the runtime at batch ``c``. So the in-process number at concurrency ``c`` is one call at batch ``c`` (at
the spec's ``opt`` dims) on one session with the served model's intra-op thread setting (``0`` = the
runtime's default, all cores), and throughput = ``c`` / call latency. Served / in-process then measures
everything the server adds: transport, (de)serialisation, the python-backend stub, queueing and batches
formed smaller than ``c``. Eager fp32 is measured the same way (torch default threads).
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


def _measure(run, feeds_for, batches: list[int], measurement_s: float, max_iters: int, warmup: int = 1) -> list[dict]:
    out = []
    for b in batches:
        feeds = feeds_for(b)
        for _ in range(warmup):
            run(feeds)
        lat = []
        t_end = time.perf_counter() + measurement_s
        while len(lat) < max_iters and (len(lat) < 2 or time.perf_counter() < t_end):
            t = time.perf_counter()
            run(feeds)
            lat.append(time.perf_counter() - t)
        a = np.asarray(lat) * 1000
        out.append({"concurrency": b, "batch": b, "iters": len(lat), "throughput": b * len(lat) / (a.sum() / 1000),
                    "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                    "avg_ms": float(a.mean())})
    return out


def _child(job: dict) -> dict:
    """Runs inside the subprocess."""
    from generator.inputs import make_inputs
    from generator.spec import load_spec

    from .loadgen import spec_point

    spec = load_spec(job["spec"])
    model = spec.model(job["model"])
    threads = int(job.get("threads") or 0)
    in_names = [t.name for t in model.inputs]
    out_names = [t.name for t in model.outputs]
    kind = job["kind"]
    if kind == "eager":
        import torch

        from generator.inputs import torch_forward
        from generator.loading import load_module

        if threads:
            torch.set_num_threads(threads)
        module = load_module(model, spec.root)

        def run(feeds):
            return torch_forward(module, model, feeds)
    elif kind == "onnxruntime":
        from generator.runtimes import ort_session

        level = job.get("ort_level") or "all"
        sess = ort_session(Path(job["artifact"]), level=level, threads=threads)
        art_in = [i.name for i in sess.get_inputs()]
        feed_names = in_names if set(in_names) <= set(art_in) else art_in[: len(in_names)]

        def run(feeds):
            return sess.run(None, {a: feeds[n] for a, n in zip(feed_names, in_names)})
    elif kind == "torchscript":
        import torch

        from generator.runtimes import torchscript_runner

        if threads:
            torch.set_num_threads(threads)
        run = torchscript_runner(Path(job["artifact"]), in_names, out_names)
    elif kind == "openvino":
        from generator.runtimes import openvino_runner

        run = openvino_runner(Path(job["artifact"]), in_names, out_names,
                              precision=job.get("ov_precision") or "f32", threads=threads)
    else:
        raise SystemExit(f"unknown baseline kind {kind!r}")

    def feeds_for(b: int) -> dict:
        return make_inputs(model, spec_point(model, b), seed=7)

    batches = [b if model.max_batch_size <= 0 else min(b, model.max_batch_size) for b in job["batches"]]
    rows = _measure(run, feeds_for, batches, job["measurement_s"], job["max_iters"])
    for row, c in zip(rows, job["batches"]):
        row["concurrency"] = c
    return {"kind": kind, "threads": threads, "rows": rows}


def run_baseline(job: dict, timeout_s: float = 600.0) -> dict:
    """Run one baseline in a fresh interpreter. ``job``: spec, model, kind (eager | onnxruntime |
    torchscript | openvino), artifact, threads, batches, measurement_s, max_iters [, ort_level, ov_precision].
    Returns ``{"kind", "threads", "rows": [...]}`` or ``{"error": ...}``."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    try:
        proc = subprocess.run([sys.executable, "-m", "perf.baseline", json.dumps(job)], capture_output=True,
                              text=True, timeout=timeout_s, env=env, cwd=str(ROOT))
    except subprocess.TimeoutExpired:
        return {"error": f"baseline did not finish within {timeout_s:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or [f"exit status {proc.returncode}"])[-1]
        return {"error": tail[:300]}
    return json.loads(lines[-1])


def command_line(job: dict) -> str:
    return f"{sys.executable} -m perf.baseline '{json.dumps(job)}'"


if __name__ == "__main__":
    print(json.dumps(_child(json.loads(sys.argv[1]))))
