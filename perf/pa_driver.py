"""Drive perf_analyzer (installed by ``generator.serve.tools.ensure_perf_analyzer``) from the spec.

Everything in its argv comes from the spec: ``--shape`` for each input with named dims (at ``opt``), the
batch size, ``--input-data`` written from real samples made by ``generator.loading.inputs``, plus the sweep's
concurrency and window. One call per concurrency level (``--concurrency-range c:c``), so the harness can
read the server's statistics around each step and keep finished steps if the server dies. Its CSV is read
by ``generator.formats.perfanalyzer.parse_csv``, with the server queue / compute input / infer / output breakdown.
"Failed to obtain stable measurement" is retried with a window twice as long.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np

from generator.errors import UserError
from generator.formats.perfanalyzer import parse_csv
from generator.spec import ModelSpec

from .loadgen import StepResult

UNSTABLE = "Failed to obtain stable measurement"


def write_input_data(feeds: list[dict], path: Path) -> Path:
    """perf_analyzer's ``--input-data`` JSON: one entry per sample, base64 raw bytes + shape per input.

    With ``-b B`` perf_analyzer stacks B samples, so each entry holds one sample without the batch dim.
    """
    data = []
    for f in feeds:
        entry = {}
        for name, arr in f.items():
            a = np.ascontiguousarray(arr)
            entry[name] = {"b64": base64.b64encode(a.tobytes()).decode(), "shape": list(a.shape)}
        data.append(entry)
    path.write_text(json.dumps({"data": data}))
    return path


def unbatched(feeds: list[dict], model: ModelSpec) -> list[dict]:
    """Samples without the batch dim (perf_analyzer adds it from ``-b``)."""
    if model.max_batch_size <= 0:
        return feeds
    return [{k: v[i] for k, v in f.items()} for f in feeds for i in range(next(iter(f.values())).shape[0])]


def shape_flags(model: ModelSpec, served_unbatched: bool = False) -> list[str]:
    """``--shape name:d1,d2`` for every input with a named dim, at the dims' ``opt`` values (with a leading 1 when
    the served config declares the batch dim itself: ``max_batch_size`` 0, dims ``[-1, ...]``)."""
    opt = model.dims_at("opt")
    lead = [1] if served_unbatched else []
    flags = []
    for t in model.inputs:
        if any(isinstance(d, str) for d in t.shape):
            flags += ["--shape", f"{t.name}:{','.join(str(d) for d in lead + list(t.concrete(opt)))}"]
    return flags


def build_argv(binary: str, model_name: str, url: str, model: ModelSpec, concurrency: int, csv_path: Path,
               input_data: Path | None, batch: int = 1, protocol: str = "grpc", measurement_mode: str = "time_windows",
               measurement_ms: int = 5000, request_count: int = 50, stability_pct: float = 10.0,
               max_trials: int = 10, request_rate: float | None = None, served_unbatched: bool = False) -> list[str]:
    """perf_analyzer's argv: closed loop at ``concurrency``, or with ``request_rate`` open loop at that
    Poisson rate (``--request-rate-range R:R --request-distribution poisson``). ``served_unbatched``: the spec
    batches but the served config has ``max_batch_size`` 0 (a release workaround): no ``-b``, whole tensors."""
    load = (["--request-rate-range", f"{request_rate:g}:{request_rate:g}", "--request-distribution", "poisson"]
            if request_rate else ["--concurrency-range", f"{concurrency}:{concurrency}"])
    argv = [str(binary), "-m", model_name, "-u", url, "-i", protocol, *load,
            "--measurement-mode", measurement_mode,
            "-s", f"{stability_pct:g}", "-r", str(max_trials), "-f", str(csv_path)]
    if model.max_batch_size > 0 and not served_unbatched:
        argv += ["-b", str(batch)]
    if measurement_mode == "time_windows":
        argv += ["--measurement-interval", str(int(measurement_ms))]
    else:
        argv += ["--measurement-request-count", str(int(request_count))]
    argv += shape_flags(model, served_unbatched)
    if input_data is not None:
        argv += ["--input-data", str(input_data)]
    return argv


def _row_to_step(row: dict, model_name: str, batch: int) -> StepResult:
    client = {k[:-3]: row[k] for k in ("client_send_ms", "network_server_send_recv_ms", "client_recv_ms") if k in row}
    server = {
        "queue_ms": row.get("server_queue_ms"),
        "compute_input_ms": row.get("server_compute_input_ms"),
        "compute_infer_ms": row.get("server_compute_infer_ms"),
        "compute_output_ms": row.get("server_compute_output_ms"),
    }
    return StepResult(
        model=model_name, driver="perf_analyzer", concurrency=int(row.get("concurrency") or 0), batch=batch,
        request_rate=row.get("request_rate"),
        throughput=float(row["throughput_infer_per_sec"]), p50_ms=row.get("p50_latency_ms"),
        p90_ms=row.get("p90_latency_ms"), p95_ms=row.get("p95_latency_ms"), p99_ms=row.get("p99_latency_ms"),
        avg_ms=row.get("avg_latency_ms"), server={"perf_analyzer": server}, client=client,
    )


def run_step(pa, model_name: str, url: str, model: ModelSpec, concurrency: int, work_dir: Path,
             input_data: Path | None, batch: int = 1, measurement_ms: int = 5000, retries: int = 2,
             timeout_s: float = 300.0, log=print, commands: list | None = None, **argv_kw) -> StepResult:
    """One concurrency level. Retries an unstable measurement with a doubled window (``retries`` times)."""
    work_dir.mkdir(parents=True, exist_ok=True)
    window = measurement_ms
    last = ""
    for attempt in range(retries + 1):
        csv_path = work_dir / f"{model_name}_c{concurrency}_try{attempt}.csv"
        argv = build_argv(pa.binary, model_name, url, model, concurrency, csv_path, input_data, batch=batch,
                          measurement_ms=window, **argv_kw)
        if commands is not None:
            commands.append(argv)
        t0 = time.monotonic()
        try:
            proc = subprocess.run(argv, capture_output=True, text=True, env=pa.env, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return StepResult(model=model_name, driver="perf_analyzer", concurrency=concurrency, batch=batch,
                              aborted=f"perf_analyzer did not finish within {timeout_s:.0f} s")
        out = proc.stdout + proc.stderr
        (work_dir / f"{model_name}_c{concurrency}_try{attempt}.log").write_text(out)
        if proc.returncode == 0 and csv_path.is_file():
            rows = parse_csv(csv_path)
            if rows:
                step = _row_to_step(rows[-1], model_name, batch)
                step.window_s = time.monotonic() - t0
                step.requests = _count(out)
                return step
        last = _last_error(out) or f"exit status {proc.returncode}"
        if UNSTABLE in out and attempt < retries:
            log(f"perf_analyzer {model_name} c={concurrency}: unstable at {window} ms; retrying at {2 * window} ms")
            window *= 2
            continue
        break
    return StepResult(model=model_name, driver="perf_analyzer", concurrency=concurrency, batch=batch,
                      aborted=f"perf_analyzer failed: {last}")


def _count(out: str) -> int:
    m = re.findall(r"Request count:\s*(\d+)", out)
    return int(m[-1]) if m else 0


def _last_error(out: str) -> str:
    lines = [ln.strip() for ln in out.splitlines() if ln.strip()]
    errs = [ln for ln in lines if re.search(r"error|failed|Failed|unable", ln)]
    return " ".join((errs or lines or [""])[-1].split())[:300]


def version_check(pa, server_version: str | None) -> str | None:
    """A warning when perf_analyzer's release differs from the server's (major.minor), else None."""
    mine = str(getattr(pa, "version", "") or "")
    if not server_version or not mine:
        return None
    if mine.split(".")[:2] != str(server_version).split(".")[:2]:
        return (f"perf_analyzer {mine} and tritonserver {server_version} differ; numbers are comparable but "
                f"install the perf_analyzer of the server's release for exact protocol parity")
    return None


def ensure(log=print):
    from generator.serve.tools import ensure_perf_analyzer

    try:
        return ensure_perf_analyzer()
    except UserError as e:
        log(f"perf_analyzer unavailable: {e}")
        return None
