"""Soak: N requests at concurrency C through a real tritonserver; errors and latency percentiles.

    python -m perf.soak                                  # 20 000 requests at concurrency 64, tiny model, embedded server
    python -m perf.soak --url 127.0.0.1:8001 --spec S --model lin__onnx     # against a running Triton
    python -m perf.soak --kill-after 3                   # fault run: SIGKILL the server 3 s in

Without ``--url`` it builds a tiny model (Linear 16 -> 8, ONNX Runtime runner, dynamic batching) with
``tritongen build --target embedded`` under ``build/soak/`` and serves it with the embedded tritonserver.
One closed-loop step of ``perf.loadgen`` (C workers, one request in flight each, a client timeout on
every request) measures until N requests have completed. Writes ``perf/results/soak-<time>.json``; a
server that dies mid-run ends the step early with the reason, and what was measured up to then is kept.
Exit status: 0 when every request succeeded, 2 otherwise. A benchmark, not a test: numbers depend on the
machine and its load.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

from perf import loadgen

ROOT = Path(__file__).resolve().parent.parent


def build_tiny(folder: Path):
    """The soak model: a spec + embedded repository under ``folder``; returns (spec, repo)."""
    import torch
    import yaml

    from generator.build.pipeline import build
    from generator.spec import load_spec

    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 8)).eval()
    torch.jit.save(torch.jit.trace(m, (torch.randn(2, 16),)), str(folder / "tiny.ts.pt"))
    (folder / "spec.yaml").write_text(yaml.safe_dump({"models": [{
        "name": "tiny", "source": {"torchscript": "tiny.ts.pt"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [16]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [8]}],
        "max_batch_size": 64, "variants": ["onnx"],
        "triton": {"dynamic_batching": {"max_queue_delay_microseconds": 500},
                   "instance_group": [{"count": 2, "kind": "KIND_CPU"}], "intra_op_threads": 1},
    }]}, sort_keys=False))
    spec = load_spec(folder / "spec.yaml")
    build(spec, folder / "repo", folder / "build", target="embedded")
    return spec, folder / "repo"


def run_soak(url: str, model_spec, triton_name: str, requests: int = 20_000, concurrency: int = 64,
             protocol: str = "grpc", timeout_s: float = 30.0, warmup_requests: int = 200) -> dict:
    """One step of ``requests`` measured requests; the result as a dict (``partial`` when it ended early)."""
    feeds = loadgen.samples(model_spec, n=8)
    outputs = [o.name for o in model_spec.outputs]
    t0 = time.perf_counter()
    step = loadgen.run_step(protocol, url, triton_name, feeds, outputs, concurrency, warmup_requests=warmup_requests,
                            warmup_s=10.0, measurement_s=3600.0, max_requests=requests, timeout_s=timeout_s)
    res = step.to_dict()
    res.update(wall_s=time.perf_counter() - t0, target_requests=requests,
               partial=bool(step.aborted) or step.requests + step.errors < requests)
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m perf.soak", description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=20_000)
    ap.add_argument("--concurrency", type=int, default=64)
    ap.add_argument("--protocol", choices=["grpc", "http"], default="grpc")
    ap.add_argument("--url", default=None, help="gRPC (or HTTP) HOST:PORT of a running Triton; default: serve here")
    ap.add_argument("--spec", type=Path, default=None, help="with --url: the spec (inputs are drawn from it)")
    ap.add_argument("--model", default=None, help="with --url: the Triton model name")
    ap.add_argument("--kill-after", type=float, default=None, metavar="S",
                    help="fault run: SIGKILL the embedded server's process group S seconds into the run")
    ap.add_argument("--out", type=Path, default=ROOT / "perf" / "results")
    args = ap.parse_args(argv)

    from generator.spec import load_spec

    server = None
    if args.url:
        if not (args.spec and args.model):
            ap.error("--url needs --spec and --model")
        spec, name, url = load_spec(args.spec), args.model, args.url
        model_spec = next(m for m in spec.models if name.startswith(m.name))
    else:
        from generator.serve.server import TritonServer

        spec, repo = build_tiny(ROOT / "build" / "soak")
        model_spec, name = spec.models[0], "tiny__onnx"
        server = TritonServer(repo, log_path=ROOT / "build" / "soak" / "tritonserver.log").start()
        url = server.urls.grpc if args.protocol == "grpc" else server.urls.http
    killer = None
    if args.kill_after is not None:
        if server is None:
            ap.error("--kill-after works on the server this script starts (no --url)")
        killer = threading.Timer(args.kill_after, lambda: os.killpg(server.pid, signal.SIGKILL))
        killer.start()
    try:
        res = run_soak(url, model_spec, name, args.requests, args.concurrency, args.protocol)
    finally:
        if killer is not None:
            killer.cancel()
        if server is not None:
            server.stop()
    res.update(cpu=_cpu_flags(), server_killed_after_s=args.kill_after)
    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"soak-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(res, indent=2) + "\n")
    print(f"{res['requests']} ok, {res['errors']} errors of {args.requests} at concurrency {args.concurrency} "
          f"({args.protocol}) in {res['window_s']:.1f} s: {res['throughput']:.0f} req/s, "
          f"p50 {_ms(res['p50_ms'])}, p99 {_ms(res['p99_ms'])}"
          + (f"; ENDED EARLY: {res['aborted']}" if res["aborted"] else "") + f"\nwrote {path}")
    return 0 if res["errors"] == 0 and not res["partial"] else 2


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f} ms"


def _cpu_flags() -> str:
    """The ISA flags that matter for speed (generator.tables.isa reads /proc/cpuinfo)."""
    from generator.tables.isa import FLAGS, cpu_flags

    return " ".join(sorted(set(FLAGS) & cpu_flags()))


if __name__ == "__main__":
    sys.exit(main())
