"""In-process baselines: the same runtime without the server, and PyTorch eager fp32 of the original model.

Each baseline runs in its own subprocess (``python -m perf.baseline JSON``), so torch's OpenMP threads never
share a process with ONNX Runtime or OpenVINO (FACTS.md: they slowed ORT up to 4x).

**What "concurrency c" means in-process.** Triton's dynamic batcher turns ``c`` outstanding batch-1
requests into batches of up to ``c``; the best any server can do at concurrency ``c`` is therefore to run
the runtime at batch ``c``. So the in-process number at concurrency ``c`` is one call at batch ``c`` (at
the spec's ``opt`` dims) on one session created by ``generator.serve.runtimes`` from the served model's own config
(the same native-backend settings the twin runs) with the intra-op threads of all served instances together
(``count`` x per-instance threads; ``0`` = the runtime's default, all cores), and throughput = ``c`` / call
latency. The result's ``twin_settings`` says which native-backend settings the session reproduced. Served / in-process then measures
everything the server adds: transport, (de)serialisation, the python-backend stub, queueing and batches
formed smaller than ``c``. Eager fp32 is measured the same way (torch default threads).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from . import timer

ROOT = Path(__file__).resolve().parent.parent


def _measure(run, feeds_for, batches: list[int], measurement_s: float, max_iters: int, warmup: int = 1,
             settle: bool = True, min_calls: int = 2, settle_s: float = 5.0) -> list[dict]:
    """Per batch: warm up until the latency settles (at most ``settle_s``, or the measurement window when longer),
    then time calls for ``measurement_s`` and at least ``min_calls`` calls."""
    out = []
    for b in batches:
        feeds = feeds_for(b)
        # warm-up until the latency settles (median of the last 3 calls within 10% of the 3 before), not a count
        warm = timer.settle(run, feeds, max_calls=max(warmup, 30), budget_s=max(measurement_s, settle_s)) if settle \
            else timer.warm_up(run, feeds, warmup)
        lat = timer.time_calls(run, feeds, max_iters, measurement_s, min_iters=max(2, min_calls))
        a = np.asarray(lat) * 1000
        out.append({"concurrency": b, "batch": b, "iters": len(lat), "warmup_calls": len(warm),
                    "settled": timer.settled(warm) if settle else None,
                    "throughput": b * len(lat) / (a.sum() / 1000),
                    "p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)),
                    "avg_ms": float(a.mean())})
    return out


def _child(job: dict) -> dict:
    """Runs inside the subprocess."""
    from generator.loading.inputs import make_inputs
    from generator.spec import load_spec

    from .loadgen import spec_point

    spec = load_spec(job["spec"])
    model = spec.model(job["model"])
    threads = int(job.get("threads") or 0)
    reproduced, extra = None, {}
    in_names = [t.name for t in model.inputs]
    out_names = [t.name for t in model.outputs]
    kind = job["kind"]
    if kind == "eager":
        import torch

        from generator.loading.inputs import torch_forward
        from generator.loading.source import load_module

        if threads:
            torch.set_num_threads(threads)
        extra["cpu_capability"] = torch.backends.cpu.get_cpu_capability()  # ATen's ISA (perf.isa caps it)
        module = load_module(model, spec.root)

        def run(feeds):
            return torch_forward(module, model, feeds)
    elif kind in ("onnxruntime", "torchscript", "openvino", "aoti"):
        from generator.serve.runtimes import open_session

        served = served_settings(kind, Path(job["artifact"]), threads, job)
        threads = served["threads"]
        session = open_session(kind, Path(job["artifact"]), in_names, out_names, served["settings"],
                               input_dims=served["input_dims"], max_batch_size=served["max_batch_size"])
        reproduced = {"settings": session.summary(), "instances": served["instances"],
                      "threads_per_instance": served["per_instance"]}

        def run(feeds):
            return session([feeds[n] for n in in_names])
    else:
        raise SystemExit(f"unknown baseline kind {kind!r}")

    def feeds_for(b: int) -> dict:
        return make_inputs(model, spec_point(model, b), seed=7)

    batches = [b if model.max_batch_size <= 0 else min(b, model.max_batch_size) for b in job["batches"]]
    rows = _measure(run, feeds_for, batches, job["measurement_s"], job["max_iters"],
                    min_calls=int(job.get("min_calls", 2)), settle_s=float(job.get("settle_s", 5.0)))
    for row, c in zip(rows, job["batches"]):
        row["concurrency"] = c
    out = {"kind": kind, "threads": threads, "rows": rows}
    if reproduced:
        out["twin_settings"] = reproduced
    out.update(extra)
    return out


def twin_note(name: str, res: dict) -> str:
    """One report line: which native-backend settings the twin (and this baseline) reproduced, at which threads."""
    t = res["twin_settings"]
    per = t.get("threads_per_instance") or "default"
    return (f"{name}: twin/in-process session {t['settings']}; served {t['instances']} instance(s) x {per} thread(s), "
            f"in-process {res.get('threads') or 'default'} thread(s)")


def served_settings(kind: str, artifact: Path, threads: int, job: dict) -> dict:
    """The session settings of the served model (its config.pbtxt beside the version folder), with the intra-op
    threads of ALL its instances together: the fair in-process equivalent of ``count`` instances x ``t`` threads
    is one session with ``count * t`` threads (issue 12). ``threads`` > 0 (per instance) overrides the config's."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    from generator.formats.pbtxt import model_dims
    from generator.serve.runtimes import settings_from_parameters, threads_of, with_threads

    cfg_path = artifact.parent.parent / "config.pbtxt"
    params, level, instances, dims, mbs = {}, None, 1, None, 0
    if cfg_path.is_file():
        cfg = text_format.Parse(cfg_path.read_text(), model_config_pb2.ModelConfig())
        params = {k: v.string_value for k, v in cfg.parameters.items()}
        level = cfg.optimization.graph.level if cfg.optimization.HasField("graph") else None
        instances = sum(g.count for g in cfg.instance_group) or 1
        mbs = cfg.max_batch_size
        batch = [-1] if cfg.max_batch_size > 0 else []
        dims = {i.name: batch + model_dims(i) for i in cfg.input}
    for k in ("ort_level", "ov_precision"):  # explicit job overrides (older callers)
        if job.get(k):
            params["ort_graph_optimization_level" if k == "ort_level" else "openvino_inference_precision"] = job[k]
    settings = settings_from_parameters(kind, params, graph_level=level)
    per_instance = threads or threads_of(kind, settings)
    total = per_instance * instances if per_instance else 0
    if not threads and kind == "openvino" and per_instance:
        # the openvino backend's INFERENCE_NUM_THREADS is the model's (one compiled model shared by its instances;
        # render.openvino_shared_model writes N*t there): it is already the total, not an instance's share
        total, per_instance = per_instance, max(1, per_instance // instances)
    if job.get("total_threads"):  # an explicit total (tune's in-process ceiling: every core on one session)
        total = int(job["total_threads"])
        settings = with_threads(kind, settings, total)
    elif job.get("equal_threads", True):
        settings = with_threads(kind, settings, total)
        if kind == "openvino" and instances > 1:
            # the served model's streams are one per instance (generator/config/render.openvino_shared_model); the
            # in-process equivalent is one session on every served thread, so one stream with all of them (with two
            # streams one call would run on half the threads)
            settings["NUM_STREAMS"] = "1"
    else:
        total = per_instance
    # max_batch_size 1 (OpenVINO on a release with the padding bug) runs one request at a time, never padded: the
    # in-process baseline runs the same IR at any batch (unfixed), as a model without Triton batching
    return {"settings": settings, "threads": total, "instances": instances, "per_instance": per_instance,
            "input_dims": dims, "max_batch_size": mbs if mbs > 1 else 0}


def run_baseline(job: dict, timeout_s: float = 600.0) -> dict:
    """Run one baseline in a fresh interpreter. ``job``: spec, model, kind (eager | onnxruntime |
    torchscript | openvino), artifact, threads, batches, measurement_s, max_iters [, min_calls (at least this many
    timed calls, default 2), settle_s (the warm-up's budget, default 5 s), ort_level, ov_precision].
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
