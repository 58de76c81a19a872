"""Speed table: every verified variant of a built repository against PyTorch eager fp32, in-process.

A benchmark, not a test. For each model of the spec, PyTorch eager (fp32) and each variant whose gate
passed (``<repo>/<model>__<variant>/manifest.json``) are timed on the same inputs, one runtime per
subprocess (so no runtime's idle thread pool -- torch's spinning OpenMP threads especially -- slows
another), with the same thread count everywhere (torch.set_num_threads, ORT intra_op_num_threads,
OpenVINO INFERENCE_NUM_THREADS, and OMP/MKL env vars), warm-up first, then ``iters`` timed calls per batch.

Output: a rich table on stdout, and CSV + Markdown under ``perf/results/bench-<timestamp>/``:
variant, batch, median and p90 latency (ms), items/s, speed-up vs eager at that batch, size on disk,
max error vs PyTorch (from the build's verification), gate status.

    python -m perf.bench examples/spec.yaml [--repo model_repository] [--batches 1,8] [--threads 2]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "perf" / "results"
FIELDS = ["model", "variant", "runtime", "precision", "batch", "median_ms", "p90_ms", "items_per_s", "speedup",
          "ceiling_pct",
          "size_mb", "max_abs", "gate"]


# --------------------------------------------------------------------------- worker (one runtime, own process)


def _thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[k] = str(threads)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    return env


def _make_runner(job: dict, model, threads: int):
    """feeds -> outputs for the runtime named in ``job``, with ``threads`` intra-op threads."""
    kind = job["runtime"]
    if kind == "eager":
        import torch

        from generator.loading.inputs import call_module, call_plan
        from generator.loading.source import load_module

        torch.set_num_threads(threads)
        module = load_module(model, Path(job["spec_root"]))
        names = [t.name for t in model.inputs]
        plan = call_plan(module, model)  # inputs by name, as the reference calls it

        def run(feeds):
            with torch.inference_mode():
                return call_module(module, model, plan, [torch.from_numpy(feeds[n]) for n in names])

        return run
    if kind in ("onnxruntime", "torchscript", "openvino", "aoti"):
        # one runtime layer: the session the served config describes (generator.serve.runtimes), at ``threads``
        from generator.serve.runtimes import open_session, with_threads

        from .baseline import served_settings

        served = served_settings(kind, Path(job["artifact"]), threads, {**job, "equal_threads": False})
        settings = with_threads(kind, served["settings"], threads)
        if kind == "openvino" and "inference_precision" in job.get("options", {}):
            settings["inference_precision"] = str(job["options"]["inference_precision"]).lower()
        session = open_session(kind, Path(job["artifact"]), [t.name for t in model.inputs],
                               [t.name for t in model.outputs], settings, input_dims=served["input_dims"],
                               max_batch_size=served["max_batch_size"])
        names = [t.name for t in model.inputs]
        return lambda feeds: session([feeds[n] for n in names])
    raise SystemExit(f"bench: runtime {kind} is not timed here")


def worker(job: dict) -> dict:
    import numpy as np

    from generator.loading.inputs import Point, make_inputs
    from generator.spec import load_spec

    from . import timer

    spec = load_spec(job["spec"])
    model = spec.model(job["model"])
    threads = job["threads"]
    run = _make_runner(job, model, threads)
    opt = tuple(sorted(model.dims_at("opt").items()))
    rows = []
    for b in job["batches"]:
        feeds = make_inputs(model, Point(b if model.max_batch_size > 0 else 0, opt), seed=7)
        timer.warm_up(run, feeds, job["warmup"])
        times = timer.time_calls(run, feeds, job["iters"], job.get("max_s", 120), min_iters=3)
        med = float(np.median(times))
        rows.append({"batch": b, "median_ms": med * 1e3, "p90_ms": float(np.percentile(times, 90)) * 1e3,
                     "items_per_s": max(b, 1) / med, "n": len(times)})
    return {"rows": rows}


# --------------------------------------------------------------------------- driver


def _variants(spec, repo: Path) -> list[dict]:
    from generator.config.render import triton_model_name
    from generator.variants import REGISTRY

    jobs = []
    for m in spec.models:
        for vs in m.variants:
            d = repo / triton_model_name(m.name, vs.name)
            man = d / "manifest.json"
            if not man.is_file():
                continue
            info = json.loads(man.read_text())
            if info.get("gate") != "passed":
                continue
            v = REGISTRY[vs.name]
            if v.runtime not in ("onnxruntime", "torchscript", "openvino", "aoti"):
                continue
            files = list((d / "1").rglob("*"))
            jobs.append({
                "model": m.name, "variant": vs.name, "runtime": v.runtime, "precision": v.precision,
                "artifact": str(d / "1" / v.filename), "options": dict(vs.options),
                "size_mb": sum(p.stat().st_size for p in files if p.is_file() and p.name != "model.py") / 1e6,
                "max_abs": (info.get("verification") or {}).get("max_abs"), "gate": info.get("gate"),
            })
    return jobs


def _time(job: dict, threads: int, timeout: int = 1800) -> dict:
    proc = subprocess.run([sys.executable, "-m", "perf.bench", "--worker", json.dumps(job)], cwd=ROOT,
                          env=_thread_env(threads), capture_output=True, text=True, timeout=timeout)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]
        return {"error": tail}
    return json.loads(lines[-1])


def run_bench(spec_path, repo_dir=Path("model_repository"), batches=(1, 8), threads: int = 2, warmup: int = 3,
              iters: int = 10, out_dir: Path = RESULTS, only: tuple[str, ...] = (), log=print) -> list[dict]:
    """Time eager PyTorch and every verified variant; returns one row per (variant, batch) and writes
    CSV + Markdown under ``out_dir/bench-<timestamp>/``."""
    from generator.errors import UserError
    from generator.spec import load_spec

    spec = load_spec(spec_path)
    repo = Path(repo_dir).resolve()
    if not repo.is_dir():
        raise UserError(f"{repo}: no model repository; build it first (tritongen build {spec_path} -o {repo_dir})")
    unknown = [n for n in only if n not in [m.name for m in spec.models]]
    if unknown:
        raise UserError(f"--only {unknown[0]}: no such model in {spec_path}; it has {', '.join(m.name for m in spec.models)}")
    if any(b < 1 for b in batches):
        raise UserError(f"--batches {','.join(map(str, batches))}: batch sizes are integers >= 1, e.g. 1,8")
    jobs = [j for j in _variants(spec, repo) if not only or j["model"] in only]
    if not jobs:
        which = ", ".join(only) or "the spec's models"
        raise UserError(f"{repo}: holds no built variant of {which}; build it first (tritongen build {spec_path} "
                        f"-o {repo_dir})")
    models = [m for m in spec.models if not only or m.name in only]
    common = {"spec": str(spec.path), "spec_root": str(spec.root), "batches": list(batches), "threads": threads,
              "warmup": warmup, "iters": iters}
    rows: list[dict] = []
    for m in models:
        eager = {"model": m.name, "variant": "pytorch-eager", "runtime": "eager", "precision": "fp32",
                 "size_mb": None, "max_abs": 0.0, "gate": "reference"}
        base: dict[int, float] = {}
        for job in [eager] + [j for j in jobs if j["model"] == m.name]:
            log(f"timing {m.name} {job['variant']} ({job['runtime']}, {threads} threads)")
            res = _time({**common, **job}, threads)
            if "error" in res:
                log(f"  {job['variant']}: {res['error']}")
                continue
            for r in res["rows"]:
                if job["runtime"] == "eager":
                    base[r["batch"]] = r["items_per_s"]
                speed = r["items_per_s"] / base[r["batch"]] if r["batch"] in base else None
                rows.append({k: job.get(k) for k in ("model", "variant", "runtime", "precision", "size_mb",
                                                     "max_abs", "gate")} | {
                    "batch": r["batch"], "median_ms": r["median_ms"], "p90_ms": r["p90_ms"],
                    "items_per_s": r["items_per_s"], "speedup": speed})
    notes = add_ceiling(rows, spec, repo, Path(out_dir), log)
    out = Path(out_dir) / f"bench-{time.strftime('%Y%m%d-%H%M%S')}"
    write_results(rows, out, {"threads": threads, "warmup": warmup, "iters": iters, "batches": list(batches),
                              "notes": notes})
    for n in notes:
        log(n)
    return rows


def _ceiling_cell(r: dict) -> str:
    return f"{r['ceiling_pct']:.1f}% {r.get('ceiling', '')}".strip() if r.get("ceiling_pct") is not None else "-"


def add_ceiling(rows: list[dict], spec, repo: Path, out_dir: Path, log=print) -> list[str]:
    """Each row's achieved FLOP/s (FLOPs of the fp32 graph x items/s) as a % of this machine's GEMM ceiling for
    its precision (perf/probe.py, cached per CPU), plus one line per precision this CPU lacks the
    instructions for (generator/tables/isa.py). Returns those lines."""
    from generator.tables import isa
    from generator.config.render import triton_model_name

    from . import probe

    peaks = probe.machine_peak(out_dir / "machine_probe.json").get("peak_gflops", {})
    flops: dict[str, float | None] = {}
    for m in spec.models:
        src = next((repo / triton_model_name(m.name, k) / "1" / "model.onnx" for k in ("onnx", "onnx-int8")
                    if (repo / triton_model_name(m.name, k) / "1" / "model.onnx").is_file()), None)
        if src is None:
            continue
        shapes = {t.name: [1] * (m.max_batch_size > 0) + list(t.concrete(m.dims_at("opt"))) for t in m.inputs}
        try:
            flops[m.name] = probe.count_flops(src, shapes)["flops"]
        except Exception as e:  # shape inference can fail on exotic graphs: no ceiling column then
            log(f"  {m.name}: FLOP count failed ({type(e).__name__}); no % of ceiling")
    for r in rows:
        kind, peak = probe.peak_for(r.get("precision") or "fp32", peaks)
        f = flops.get(r["model"])
        if f and peak and r.get("items_per_s"):
            r["ceiling_pct"] = 100.0 * f * r["items_per_s"] / (peak * 1e9)
            r["ceiling"] = kind
    notes = [n for n in {isa.speed_note(r.get("precision") or "") for r in rows} if n]
    return sorted(notes)


def _fmt(v, spec=".2f"):
    if v is None:
        return "-"
    if isinstance(v, float):
        return format(v, ".1e" if spec == "e" else spec)
    return str(v)


def write_results(rows: list[dict], out: Path, meta: dict) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "bench.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        for r in rows:
            w.writerow({k: r.get(k) for k in FIELDS})
    head = ["model", "variant", "batch", "median ms", "p90 ms", "items/s", "speed-up", "% of ceiling", "size MB",
            "max err", "gate"]
    lines = [f"# tritongen bench ({', '.join(f'{k}={v}' for k, v in meta.items())})", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in sorted(rows, key=lambda r: (r["model"], r["batch"], -(r["items_per_s"] or 0))):
        lines.append("| " + " | ".join([
            r["model"], r["variant"], str(r["batch"]), _fmt(r["median_ms"], ".1f"), _fmt(r["p90_ms"], ".1f"),
            _fmt(r["items_per_s"]), (_fmt(r["speedup"]) + "x") if r["speedup"] else "-", _ceiling_cell(r),
            _fmt(r["size_mb"], ".1f"), _fmt(r["max_abs"], "e"), r["gate"] or "-"]) + " |")
    lines += [""] + [f"- {n}" for n in meta.get("notes", [])]
    (out / "bench.md").write_text("\n".join(lines) + "\n")
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    _print_table(rows, out)
    return out


def _print_table(rows: list[dict], out: Path) -> None:
    try:
        from rich.console import Console
        from rich.table import Table
    except ImportError:
        print((out / "bench.md").read_text())
        return
    t = Table(title=f"tritongen bench -> {out}")
    for h in ("model", "variant", "batch", "median ms", "p90 ms", "items/s", "speed-up", "% of ceiling", "size MB",
              "max err", "gate"):
        t.add_column(h, justify="left" if h in ("model", "variant", "gate") else "right")
    for r in sorted(rows, key=lambda r: (r["model"], r["batch"], -(r["items_per_s"] or 0))):
        t.add_row(r["model"], r["variant"], str(r["batch"]), _fmt(r["median_ms"], ".1f"), _fmt(r["p90_ms"], ".1f"),
                  _fmt(r["items_per_s"]), (_fmt(r["speedup"]) + "x") if r["speedup"] else "-", _ceiling_cell(r),
                  _fmt(r["size_mb"], ".1f"), _fmt(r["max_abs"], "e"), r["gate"] or "-")
    Console(width=None if sys.stdout.isatty() else 160).print(t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.bench", description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?")
    p.add_argument("--repo", default="model_repository")
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--out", default=str(RESULTS))
    p.add_argument("--worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(worker(json.loads(a.worker))), flush=True)
        return 0
    if not a.spec:
        p.error("SPEC is required")
    from generator.errors import UserError

    try:
        run_bench(a.spec, Path(a.repo), tuple(int(b) for b in a.batches.split(",")), a.threads, a.warmup, a.iters,
                  Path(a.out), tuple(a.only))
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
