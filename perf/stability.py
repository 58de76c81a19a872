"""Numbers that survive a second run: repeated rounds, a quiet check, a plausibility check.

    quiet_check(probe_s=0.3) -> {"load1", "probe_ms", "cores", "memory_ms"}  # load average, short fixed probes
    drift(before, after) -> float                               # probe_ms after / before (1.0: unchanged)
    interval(values) -> (median, low, high)                      # the 95% interval of repeated measurements
    combine_rounds([baseline result per round]) -> one result    # per concurrency: median, 95% interval, spread
    unreliable_reason(combined, before, after) -> str | None     # spread or probe drift too large
    combine_steps([served step per round]) -> one step           # median throughput / p50 / p95 / p99, intervals
    step_unreliable(combined) -> str | None                      # too few rounds, too wide, or the probe moved
    paired_ratio(a_rounds, b_rounds) -> (ratio, low, high) | None  # a / b round by round, with its interval
    unpaired_ratio(a_rounds, b_rounds) -> (ratio, low, high) | None  # a / b measured apart (Welch on logs)
    batching_plausible(rows, runtime) -> str | None              # throughput gained with batch vs what it allows

A baseline taken while the machine was busy made one report's headline 3.4x too high (issue 22): its
eager fp32 throughput "grew" 5x from batch 1 to batch 8, which PyTorch eager on a CPU does not do.
"""

from __future__ import annotations

import contextlib
import math
import os
import statistics
import time

from . import confirm

MAX_SPREAD = 0.25  # (max - min) / median of a step's rounds above this: the step is unreliable
MAX_DRIFT = 1.25  # the fixed probe slower or faster than this factor after a phase: it was disturbed
MAX_HALF_WIDTH = 0.15  # a served step's 95% interval wider than +-15% of its median: re-measured, then unreliable
STEP_PERCENTILES = ("p50_ms", "p95_ms", "p99_ms")
# the most a runtime's throughput may grow from batch 1 to its largest batch on a CPU before we call the
# baseline implausible (eager fp32 GEMMs already fill the cores at batch 1; measured 1.1-1.2x on the ViT)
BATCH_GAIN_LIMIT = {"eager": 2.0}


def quiet_check(probe_s: float = 0.3) -> dict:
    """The 1-minute load average and the median time of a fixed small numpy GEMM (the same work every time),
    on one BLAS thread: a multi-threaded GEMM this small waits on the scheduler for its threads, and on a
    loaded machine it was bimodal (0.2 ms or 24-32 ms, the same machine a second apart), which is no measure
    of the machine's speed."""
    import numpy as np

    a = np.random.default_rng(0).standard_normal((192, 192)).astype(np.float32)
    times = []
    try:
        from threadpoolctl import threadpool_limits

        limit = threadpool_limits(1)
    except ImportError:  # not installed: the BLAS's own threads (noisier under load)
        limit = contextlib.nullcontext()
    with limit:
        deadline = time.perf_counter() + probe_s
        while time.perf_counter() < deadline or len(times) < 5:
            t = time.perf_counter()
            a @ a
            times.append(time.perf_counter() - t)
    return {"load1": os.getloadavg()[0], "probe_ms": statistics.median(times) * 1e3, "cores": os.cpu_count(),
            "memory_ms": memory_probe_ms()}


_MEMORY: dict = {}


def memory_probe_ms(mib: int = 64, reads: int = 3) -> float:
    """The median time (ms) of copying a fixed ``mib`` MiB buffer (beyond a shared last-level cache): what the small
    GEMM above, which stays in cache, cannot see -- the memory traffic of the host's other tenants. Recorded with
    every quiet check (results.json) and shown on ``perf.compare_runs``' machine line; not yet used to correct
    anything. Session 16 saw eager fp32 swing +-13% within one process over 40 s, and one run's sweep 3-8% faster
    than the other's at c=8, while the GEMM probe read the same."""
    import numpy as np

    if _MEMORY.get("mib") != mib:  # allocated and touched once per process (0.3 s), not timed
        src = np.ones(mib * 2**18, dtype=np.float32)
        dst = np.empty_like(src)
        np.copyto(dst, src)
        _MEMORY.update(mib=mib, src=src, dst=dst)
    src, dst = _MEMORY["src"], _MEMORY["dst"]
    times = []
    for _ in range(reads):
        t = time.perf_counter()
        np.copyto(dst, src)
        times.append(time.perf_counter() - t)
    return statistics.median(times) * 1e3


def drift(before: dict | None, after: dict | None) -> float:
    if not before or not after or not before.get("probe_ms"):
        return 1.0
    return after["probe_ms"] / before["probe_ms"]


def interval(values: list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(median, low, high): the median of repeated measurements and the ``level`` Student-t interval of their
    geometric mean (on logs; ``perf.confirm.ratio_interval``, scipy.stats.t). (median, 0, inf) from one value;
    (0, 0, 0) from none."""
    vals = [v for v in values if v and v > 0]
    if not vals:
        return 0.0, 0.0, 0.0
    _, lo, hi = confirm.ratio_interval(vals, level)
    return statistics.median(vals), lo, hi


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
        med, lo, hi = interval(tps)
        rows.append({**row, "throughput": med, "throughput_rounds": tps, "throughput_ci": [lo, hi],
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


def combine_steps(steps: list[dict]) -> dict:
    """One served step (a variant, driver and concurrency) from its rounds (``perf.loadgen.StepResult``
    dicts, in round order, each with the probe ``drift`` of its round): the round with the median throughput
    stands for the server's breakdown; throughput and every latency figure are the medians of the rounds,
    throughput, p50, p95 and p99 each with its 95% interval (``interval``); requests, errors and windows add up; ``drift`` is the round whose probe
    moved most."""
    ok = [s for s in steps if (s.get("throughput") or 0) > 0]
    if not ok:
        return {**steps[-1], "rounds": 0} if steps else {}
    tps = [s["throughput"] for s in ok]
    med, lo, hi = interval(tps)
    rep = sorted(ok, key=lambda s: s["throughput"])[(len(ok) - 1) // 2]
    out = {**rep, "throughput": med, "throughput_rounds": tps, "throughput_ci": [lo, hi], "rounds": len(ok),
           "half_width": (hi - lo) / 2 / med if med and hi != float("inf") else None,
           "spread": (max(tps) - min(tps)) / med if med else None,
           "requests": sum(s.get("requests") or 0 for s in steps), "errors": sum(s.get("errors") or 0 for s in steps),
           "window_s": sum(s.get("window_s") or 0.0 for s in steps),
           "aborted": next((s["aborted"] for s in steps if s.get("aborted")), ""),
           "warmup_settled": [(s.get("warmup") or {}).get("settled") for s in ok]}
    for k in STEP_PERCENTILES:
        vals = [s[k] for s in ok if s.get(k)]
        if vals:
            m, a, b = interval(vals)
            out[k], out[f"{k}_rounds"], out[f"{k}_ci"] = m, vals, [a, b]
    for k in ("p90_ms", "avg_ms"):  # medians too, so no latency figure comes from a single round
        vals = [s[k] for s in ok if s.get(k)]
        if vals:
            out[k] = statistics.median(vals)
    drifts = [s["drift"] for s in ok if s.get("drift")]
    out["drift"] = max(drifts, key=lambda d: abs(math.log(d))) if drifts else None
    return out


def step_unreliable(combined: dict, max_half_width: float = MAX_HALF_WIDTH) -> str | None:
    """Why a combined served step cannot be trusted, or None: fewer than 2 rounds (no interval), the fixed
    probe moved more than ``MAX_DRIFT`` in one of its rounds, or its throughput interval is wider than
    +-``max_half_width`` of the median."""
    n = combined.get("rounds") or 0
    if n < 2:
        return f"{n} round(s): no interval"
    d = combined.get("drift")
    if d and (d > MAX_DRIFT or d < 1 / MAX_DRIFT):
        return f"the fixed probe moved {d:.2f}x during one of its rounds (the machine got busier or quieter)"
    hw = combined.get("half_width")
    if hw is None or hw > max_half_width:
        return (f"its {n} rounds ({', '.join(f'{t:.3g}' for t in combined['throughput_rounds'])}/s) give a 95% "
                f"interval of +-{hw:.0%} of the median (more than +-{max_half_width:.0%})" if hw is not None
                else f"its {n} rounds give no finite interval")
    return None


def paired_ratio(a_rounds: list[float], b_rounds: list[float]) -> tuple[float, float, float] | None:
    """``a / b`` round by round (round i of a with round i of b, where both are > 0): the geometric mean and
    its 95% interval; None with fewer than 2 pairs."""
    pairs = [(a, b) for a, b in zip(a_rounds or [], b_rounds or []) if a and b and a > 0 and b > 0]
    if len(pairs) < 2:
        return None
    return confirm.paired([a for a, _ in pairs], [b for _, b in pairs], lambda v: v)


def unpaired_ratio(a_rounds: list[float], b_rounds: list[float], level: float = 0.95
                   ) -> tuple[float, float, float] | None:
    """``a / b`` where a's rounds and b's were measured in different phases (a served step against a baseline
    taken before the server started): round i of one has nothing in common with round i of the other, so
    pairing them would be pretend. The ratio of the geometric means and the Welch ``level`` interval of the
    difference of the mean logs (each side's own variance, Welch-Satterthwaite degrees of freedom,
    scipy.stats.t); None with fewer than 2 rounds on either side."""
    la = [math.log(v) for v in a_rounds or [] if v and v > 0]
    lb = [math.log(v) for v in b_rounds or [] if v and v > 0]
    if len(la) < 2 or len(lb) < 2:
        return None
    ma, mb = statistics.fmean(la), statistics.fmean(lb)
    va, vb = statistics.variance(la) / len(la), statistics.variance(lb) / len(lb)
    d = ma - mb
    se2 = va + vb
    if se2 == 0:
        return math.exp(d), math.exp(d), math.exp(d)
    df = se2 ** 2 / (va ** 2 / (len(la) - 1) + vb ** 2 / (len(lb) - 1))
    from scipy.stats import t

    half = float(t.ppf(0.5 + level / 2, df)) * math.sqrt(se2)
    return math.exp(d), math.exp(d - half), math.exp(d + half)
