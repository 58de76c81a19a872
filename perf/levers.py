"""What each INT8 lever buys on one model, measured side by side (issue 22): a benchmark, not a test.

    python -m perf.levers examples/spec.yaml --model vit_b16 [--fp32 PATH] [--rounds 3] [--batches 1,8]
                          [--threads 2] [--only NAME ...] [--layout NAME]

1. Build: every lever of ``LEVERS`` is made from the optimised fp32 ONNX (``--fp32``; default the build
   cache's ``build/<model>/export/optimized/model.onnx``) with the generator's own stages -- ONNX Runtime's
   transformer fusions and quantizer (generator/stages/quantize.py), NNCF for OpenVINO -- into
   ``build/levers/<model>/<lever>/`` (kept: a second run only times).
2. Gate: each artifact is verified against PyTorch eager fp32 with the INT8 variants' own gate
   (generator/stages/verify.py with onnx_int8.int8_tolerance): pass/fail, min cosine, max |delta logit|, top-1.
3. Time: PyTorch eager fp32 and every lever in-process, one runtime per subprocess (perf.bench's worker:
   perf.timer's warm-up and timed calls, the same thread count everywhere), in ``--rounds`` interleaved rounds
   (the order rotates each round). Each ratio (vs ``BASELINE``, the current onnx-int8-dynamic, and vs eager)
   is taken within a round, and reported as the geometric mean over rounds with its 95% t interval.
4. ``--layout NAME``: that lever's artifact under thread layouts (1 session x 1 thread, 1 x T, T sessions x 1
   thread running concurrently), ratios vs 1 x T, in interleaved rounds too.

Writes ``levers.json`` and ``levers.md`` under ``perf/results/levers-<timestamp>/``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "perf" / "results"
BASELINE = "dynamic"

# name -> how it is built. kind: dynamic | static (ORT's quantizer) | openvino (NNCF); fusion: ORT's transformer
# fusions first; weights_only: MatMuls of two activations (attention scores) left in fp32.
LEVERS: dict[str, dict] = {
    "dynamic": {"kind": "dynamic", "per_channel": False, "reduce_range": True,
                "label": "onnx-int8-dynamic as it was (per-tensor, reduce_range, no fusion)"},
    "dynamic+fusion": {"kind": "dynamic", "per_channel": False, "reduce_range": True, "fusion": True,
                       "label": "dynamic + ORT transformer fusions"},
    "static U8U8": {"kind": "static", "activation_type": "uint8", "weight_type": "uint8",
                    "label": "static QDQ per-channel U8U8 (this CPU's default without VNNI)"},
    "static U8S8": {"kind": "static", "activation_type": "uint8", "weight_type": "int8",
                    "label": "static QDQ per-channel U8S8"},
    "static S8S8": {"kind": "static", "activation_type": "int8", "weight_type": "int8",
                    "label": "static QDQ per-channel S8S8 (symmetric activations)"},
    "static U8S8 per-tensor": {"kind": "static", "activation_type": "uint8", "weight_type": "int8",
                               "per_channel": False, "label": "static QDQ per-tensor U8S8"},
    "static U8S8 QOperator": {"kind": "static", "activation_type": "uint8", "weight_type": "int8",
                              "quant_format": "qoperator", "label": "static QOperator per-channel U8S8"},
    "static U8S8+fusion": {"kind": "static", "activation_type": "uint8", "weight_type": "int8", "fusion": True,
                           "label": "static QDQ per-channel U8S8 + ORT transformer fusions"},
    "static U8S8 weights-only": {"kind": "static", "activation_type": "uint8", "weight_type": "int8",
                                 "weights_only": True,
                                 "label": "static QDQ U8S8, attention-score MatMuls left fp32"},
    "openvino-int8 transformer": {"kind": "openvino", "model_type": "transformer",
                                  "label": "NNCF, ModelType.TRANSFORMER, performance preset"},
    "openvino-int8 generic": {"kind": "openvino", "model_type": "generic",
                              "label": "NNCF, no model type, performance preset"},
}


# --------------------------------------------------------------------------- build + gate (this process)


def _activation_matmuls(path: Path) -> list[str]:
    """MatMul nodes whose two inputs are both computed (no initializer): attention's QK^T and PV."""
    import onnx

    g = onnx.load(str(path), load_external_data=False).graph
    inits = {i.name for i in g.initializer}
    return [n.name for n in g.node if n.op_type == "MatMul" and not any(i in inits for i in n.input)]


def build_lever(name: str, cfg: dict, fp32: Path, fused: Path, samples: list[dict], out_dir: Path, model,
                log=print) -> Path:
    from generator.stages import quantize as q

    d = out_dir / name.replace(" ", "_").replace("+", "_")
    stamp = d / "lever.json"
    art = d / ("model.xml" if cfg["kind"] == "openvino" else "model.onnx")
    if art.is_file() and stamp.is_file() and json.loads(stamp.read_text()).get("cfg") == cfg:
        return art
    d.mkdir(parents=True, exist_ok=True)
    src = fused if cfg.get("fusion") else fp32
    t = time.perf_counter()
    if cfg["kind"] == "dynamic":
        info = q.quantize_dynamic_onnx(src, art, per_channel=cfg["per_channel"], reduce_range=cfg["reduce_range"])
    elif cfg["kind"] == "static":
        exclude = _activation_matmuls(src) if cfg.get("weights_only") else []
        info = q.quantize_static_onnx(src, art, samples, per_channel=cfg.get("per_channel", True),
                                      activation_type=cfg["activation_type"], weight_type=cfg["weight_type"],
                                      quant_format=cfg.get("quant_format", "qdq"), exclude=exclude)
    else:
        import nncf
        import openvino as ov

        names = [t.name for t in model.inputs]
        kw = {"model_type": nncf.ModelType.TRANSFORMER} if cfg["model_type"] == "transformer" else {}
        qm = nncf.quantize(ov.convert_model(str(src)), nncf.Dataset(samples, lambda f: {k: f[k] for k in names}),
                           preset=nncf.QuantizationPreset.PERFORMANCE, subset_size=len(samples), **kw)
        ov.save_model(qm, str(art), compress_to_fp16=False)
        info = {"fake_quantize_ops": sum(1 for op in qm.get_ops() if op.get_type_name() == "FakeQuantize")}
    info["build_s"] = round(time.perf_counter() - t, 1)
    stamp.write_text(json.dumps({"cfg": cfg, "info": info}, default=str))
    log(f"built {name} in {info['build_s']} s")
    return art


def gate(name: str, cfg: dict, art: Path, model, reference) -> dict:
    from generator.serve.runtimes import openvino_runner, ort_runner
    from generator.spec.models import VariantSpec
    from generator.variants import REGISTRY
    from generator.stages.verify import gate_metrics, verify

    outs = [t.name for t in model.outputs]
    run = (openvino_runner(art, [t.name for t in model.inputs], outs) if cfg["kind"] == "openvino"
           else ort_runner(art, outs, level="all"))
    key = "openvino-int8" if cfg["kind"] == "openvino" else "onnx-int8"  # the INT8 gate: one default for the three
    vspec = next((v for v in model.variants if v.name == key), None) or VariantSpec(name=key)
    tol = REGISTRY[key].tolerance_for(model, vspec)  # the spec's verify keys over the variant's default
    v = verify(run, reference, model, tol)
    return {"passed": v.passed, "max_abs": round(v.max_abs, 4), **gate_metrics(v),
            **({} if v.passed else {"failed": (v.error or "; ".join(v.failed))[:200]})}


# --------------------------------------------------------------------------- timing (subprocesses)


def _layout_worker(job: dict) -> dict:
    """``instances`` sessions of ``threads`` intra-op threads each, called concurrently (one Python thread per
    session; ONNX Runtime releases the GIL): items/s of all of them together, per batch."""
    from generator.loading.inputs import Point, make_inputs
    from generator.serve.runtimes import open_session, with_threads
    from generator.spec import load_spec

    from . import timer

    model = load_spec(job["spec"]).model(job["model"])
    names, outs = [t.name for t in model.inputs], [t.name for t in model.outputs]
    runtime = job["runtime"]
    sessions = [open_session(runtime, Path(job["artifact"]), names, outs, with_threads(runtime, {}, job["threads"]))
                for _ in range(job["instances"])]
    opt = tuple(sorted(model.dims_at("opt").items()))
    rows = []
    for b in job["batches"]:
        feeds = make_inputs(model, Point(b, opt), seed=7)
        runs = [lambda f, s=s: s([f[n] for n in names]) for s in sessions]
        for r in runs:
            timer.warm_up(r, feeds, job["warmup"])
        lat: list[list[float]] = [[] for _ in runs]

        def loop(i: int) -> None:
            lat[i] = timer.time_calls(runs[i], feeds, 10**6, job["max_s"], min_iters=3)

        threads = [threading.Thread(target=loop, args=(i,)) for i in range(len(runs))]
        t = time.perf_counter()
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wall = time.perf_counter() - t
        rows.append({"batch": b, "items_per_s": b * sum(len(x) for x in lat) / wall, "n": sum(len(x) for x in lat)})
    return {"rows": rows}


def _time(job: dict, threads: int, layout: bool = False) -> dict:
    from .bench import _thread_env

    mod = ["-m", "perf.levers", "--layout-worker"] if layout else ["-m", "perf.bench", "--worker"]
    proc = subprocess.run([sys.executable, *mod, json.dumps(job)], cwd=ROOT, env=_thread_env(threads),
                          capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        return {"error": (proc.stderr.strip().splitlines() or ["no output"])[-1][:200]}
    return {r["batch"]: r["items_per_s"] for r in json.loads(lines[-1])["rows"]}


def ratio_ci(pairs: list[tuple[float, float]]) -> dict:
    """Geometric mean of a/b over rounds with its 95% t interval (on the log ratios)."""
    from scipy import stats

    logs = [math.log(a / b) for a, b in pairs if a and b]
    n = len(logs)
    if n == 0:
        return {"ratio": None, "ci95": None, "n": 0}
    m = sum(logs) / n
    if n < 2:
        return {"ratio": math.exp(m), "ci95": None, "n": n}
    sd = (sum((x - m) ** 2 for x in logs) / (n - 1)) ** 0.5
    h = stats.t.ppf(0.975, n - 1) * sd / n ** 0.5
    return {"ratio": math.exp(m), "ci95": [math.exp(m - h), math.exp(m + h)], "n": n}


def interleaved(jobs: dict[str, dict], rounds: int, threads: int, log=print, layout: bool = False) -> dict:
    """name -> [{batch: items/s} per round], the order rotated every round (A B C, B C A, ...)."""
    names = list(jobs)
    out: dict[str, list] = {n: [] for n in names}
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for n in order:
            res = _time(jobs[n], jobs[n].get("env_threads", threads), layout=layout or "instances" in jobs[n])
            out[n].append(res)
            log(f"round {r + 1}/{rounds} {n}: " + (res.get("error") or ", ".join(
                f"b{b} {v:.2f}/s" for b, v in res.items())))
    return out


def ratios(times: dict[str, list], base: str, batches) -> dict:
    out = {}
    for n, per in times.items():
        out[n] = {}
        for b in batches:
            pairs = [(x.get(b), y.get(b)) for x, y in zip(per, times[base]) if "error" not in x and "error" not in y]
            out[n][b] = ratio_ci(pairs)
    return out


def _cell(r: dict) -> str:
    if not r or r.get("ratio") is None:
        return "-"
    ci = r.get("ci95")
    return f"{r['ratio']:.2f}x" + (f" [{ci[0]:.2f}, {ci[1]:.2f}]" if ci else "")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m perf.levers", description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?")
    p.add_argument("--model")
    p.add_argument("--fp32")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--iters", type=int, default=8)
    p.add_argument("--max-s", type=float, default=20.0)
    p.add_argument("--only", action="append", default=[])
    p.add_argument("--layout", help="time this lever's thread layouts instead")
    p.add_argument("--no-eager", action="store_true")
    p.add_argument("--layout-worker", help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.layout_worker:
        print(json.dumps(_layout_worker(json.loads(a.layout_worker))), flush=True)
        return 0
    if not a.spec or not a.model:
        p.error("SPEC and --model are required")
    from generator.loading.calibration import calibration_samples
    from generator.loading.inputs import torch_forward
    from generator.loading.source import load_module
    from generator.stages import quantize as q
    from generator.spec import load_spec

    spec = load_spec(a.spec)
    model = spec.model(a.model)
    batches = [int(b) for b in a.batches.split(",")]
    fp32 = Path(a.fp32) if a.fp32 else ROOT / "build" / model.name / "export" / "optimized" / "model.onnx"
    out_dir = ROOT / "build" / "levers" / model.name
    out_dir.mkdir(parents=True, exist_ok=True)
    fused = out_dir / "fused" / "model.onnx"
    names = [a.layout] if a.layout else [n for n in LEVERS if not a.only or n in a.only or n == BASELINE]
    if not fused.is_file() and any(LEVERS[n].get("fusion") for n in names):
        info = q.fuse_transformer(fp32, fused, text=False)
        (fused.parent / "fusion.json").write_text(json.dumps(info))
    samples = calibration_samples(model, spec.root, print)
    module = load_module(model, spec.root)
    arts, gates = {}, {}
    for n in names:
        arts[n] = build_lever(n, LEVERS[n], fp32, fused, samples, out_dir, model)
    for n in names if not a.layout else ():  # layouts change no numbers
        gates[n] = gate(n, LEVERS[n], arts[n], model, lambda f, pt: torch_forward(module, model, f, pt))
        print(f"gate {n}: {gates[n]}", flush=True)
    del module
    common = {"spec": str(spec.path), "spec_root": str(spec.root), "model": model.name, "batches": batches,
              "warmup": 2, "iters": a.iters, "max_s": a.max_s}

    def job(n: str, **kw) -> dict:
        kind = "openvino" if LEVERS[n]["kind"] == "openvino" else "onnxruntime"
        return {**common, "runtime": kind, "artifact": str(arts[n]), "options": {}, **kw}

    stamp = time.strftime("%Y%m%d-%H%M%S")
    res_dir = RESULTS / f"levers-{stamp}"
    res_dir.mkdir(parents=True, exist_ok=True)
    load = {"before": os.getloadavg()}
    if a.layout:
        t = a.threads
        jobs = {f"1 x {t} threads": job(a.layout, threads=t, instances=1),
                "1 x 1 thread": job(a.layout, threads=1, instances=1, env_threads=1),
                f"{t} x 1 thread": job(a.layout, threads=1, instances=t, env_threads=1)}
        times = interleaved(jobs, a.rounds, a.threads, layout=True)
        table = ratios(times, f"1 x {t} threads", batches)
        load["after"] = os.getloadavg()
        result = {"lever": a.layout, "times": times, "ratios": table, "load": load}
        lines = [f"| layout ({a.layout}) | " + " | ".join(f"batch {b} vs 1 x {t}" for b in batches) + " |",
                 "|---|" + "---|" * len(batches)]
        lines += [f"| {n} | " + " | ".join(_cell(table[n][b]) for b in batches) + " |" for n in jobs]
    else:
        jobs = {n: job(n, threads=a.threads) for n in names}
        if not a.no_eager:
            jobs = {"pytorch-eager": {**common, "runtime": "eager", "threads": a.threads}, **jobs}
        times = interleaved(jobs, a.rounds, a.threads)
        load["after"] = os.getloadavg()
        vs_base = ratios(times, BASELINE, batches)
        vs_eager = ratios(times, "pytorch-eager", batches) if "pytorch-eager" in jobs else {}
        result = {"times": times, "vs_baseline": vs_base, "vs_eager": vs_eager, "gates": gates, "load": load,
                  "levers": {n: LEVERS[n] for n in names}}
        head = [f"b{b} vs {BASELINE}" for b in batches] + [f"b{b} vs eager" for b in batches]
        lines = ["| lever | " + " | ".join(head) + " | gate | min cosine | max abs | top-1 |",
                 "|---|" + "---|" * (len(head) + 4)]
        for n in jobs:
            g = gates.get(n, {})
            lines.append(f"| {n} | " + " | ".join([_cell(vs_base[n][b]) for b in batches]
                                                  + [_cell(vs_eager.get(n, {}).get(b)) for b in batches])
                         + f" | {'passed' if g.get('passed') else ('failed' if g else '-')} | "
                           f"{g.get('min_cosine', '-')} | {g.get('max_abs', '-')} | {g.get('top1', '-')} |")
    lines += ["", f"rounds {a.rounds}, threads {a.threads}, load average before {load['before']}, after "
                  f"{load['after']}; 95% t intervals of the per-round ratios"]
    (res_dir / "levers.json").write_text(json.dumps(result, indent=2, default=str))
    (res_dir / "levers.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    print(f"-> {res_dir}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
