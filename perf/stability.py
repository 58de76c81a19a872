"""Numbers that survive a second run: repeated rounds, a quiet check, a plausibility check.

    quiet_check(probe_s=0.3) -> {"load1", "probe_ms", "cores"}   # load average and a short fixed probe
    drift(before, after) -> float                               # probe_ms after / before (1.0: unchanged)
    combine_rounds([baseline result per round]) -> one result    # per concurrency: median, 95% interval, spread
    unreliable_reason(combined, before, after) -> str | None     # spread or probe drift too large
    batching_plausible(rows, runtime) -> str | None              # throughput gained with batch vs what it allows

A baseline taken while the machine was busy made one report's headline 3.4x too high (issue 22): its
eager fp32 throughput "grew" 5x from batch 1 to batch 8, which PyTorch eager on a CPU does not do.
"""

from __future__ import annotations

import os
import statistics
import time

from . import confirm

MAX_SPREAD = 0.25  # (max - min) / median of a step's rounds above this: the step is unreliable
MAX_DRIFT = 1.25  # the fixed probe slower or faster than this factor after a phase: it was disturbed
# the most a runtime's throughput may grow from batch 1 to its largest batch on a CPU before we call the
# baseline implausible (eager fp32 GEMMs already fill the cores at batch 1; measured 1.1-1.2x on the ViT)
BATCH_GAIN_LIMIT = {"eager": 2.0}


def quiet_check(probe_s: float = 0.3) -> dict:
    """The 1-minute load average and the median time of a fixed small numpy GEMM (the same work every time)."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)
    times = []
    deadline = time.perf_counter() + probe_s
    while time.perf_counter() < deadline or len(times) < 5:
        t = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t)
    return {"load1": os.getloadavg()[0], "probe_ms": statistics.median(times) * 1e3, "cores": os.cpu_count()}


def drift(before: dict | None, after: dict | None) -> float:
    if not before or not after or not before.get("probe_ms"):
        return 1.0
    return after["probe_ms"] / before["probe_ms"]


def combine_rounds(results: list[dict]) -> dict:
    """One baseline result from several rounds of the same job: per concurrency the median throughput, its
    95% interval (Student t on the rounds' logs), the spread and every round's value. Failed rounds are left
    out; all failed: the last error."""
    ok = [r for r in results if "error" not in r and r.get("rows")]
    if not ok:
        return results[-1] if results else {"error": "no round ran"}
    out = {k: v for k, v in ok[0].items() if k != "rows"}
    rows = []
    for i, row in enumerate(ok[0]["rows"]):
        tps = [r["rows"][i]["throughput"] for r in ok if i < len(r["rows"]) and r["rows"][i].get("throughput")]
        med = statistics.median(tps) if tps else 0.0
        ref = [t / med for t in tps] if med else []
        _, lo, hi = confirm.ratio_interval(ref) if len(ref) > 1 else (1.0, 0.0, float("inf"))
        rows.append({**row, "throughput": med, "throughput_rounds": tps, "throughput_ci": [med * lo, med * hi],
                     "spread": (max(tps) - min(tps)) / med if med else None})
    out.update(rows=rows, rounds=len(ok))
    return out


def unreliable_reason(combined: dict, before: dict | None, after: dict | None) -> str | None:
    """Why a combined baseline cannot be trusted (too few rounds, rounds too far apart, the machine's probe
    moved), or None."""
    if "error" in combined:
        return None
    d = drift(before, after)
    if d > MAX_DRIFT or d < 1 / MAX_DRIFT:
        return f"the fixed probe moved {d:.2f}x during the phase (the machine got busier or quieter)"
    spreads = [(r["spread"], r["concurrency"]) for r in combined.get("rows", []) if r.get("spread") is not None]
    if spreads:
        s, c = max(spreads)
        if s > MAX_SPREAD:
            return f"its rounds differ by {s:.0%} at concurrency {c} (more than {MAX_SPREAD:.0%})"
    if combined.get("rounds", 1) < 3:
        return f"{combined.get('rounds', 1)} round(s): fewer than 3"
    return None


def batching_plausible(rows: list[dict], runtime: str = "eager") -> str | None:
    """A warning when the baseline's throughput grows more from the smallest to the largest batch than
    ``runtime`` allows on a CPU (``BATCH_GAIN_LIMIT``); None when plausible or unknown."""
    limit = BATCH_GAIN_LIMIT.get(runtime)
    pts = sorted((r["batch"], r["throughput"]) for r in rows if r.get("throughput") and r.get("batch"))
    if limit is None or len(pts) < 2 or pts[0][0] == pts[-1][0]:
        return None
    gain = pts[-1][1] / pts[0][1]
    if gain <= limit:
        return None
    return (f"{runtime} throughput grows {gain:.1f}x from batch {pts[0][0]} to batch {pts[-1][0]}, more than the "
            f"{limit:g}x a CPU allows it: the baseline was probably disturbed; re-measure it on a quiet machine")
