"""Open-loop load: requests arrive at a Poisson rate whatever the server does (as users arrive), unlike the
closed loop of ``perf.loadgen`` (each client waits for its answer before sending again).

    arrivals(rate, duration_s, seed) -> send times (s from the start): exponential gaps, mean 1 / rate
    run_rate(protocol, url, model, feeds, outputs, rate, ...) -> StepResult (request_rate = rate)
    rate_sweep(..., rates, budget_ms) -> {"steps": [...], "max_rate": highest rate held, "rates": [...]}
    climb(rates, step, beyond) -> the same walk for any driver: the given rates, then on past the last one held
    held(step, budget_ms) -> bool: the offered rate served (>= 95%), p99 within the budget, no errors
    served_rate(n, window_s, drain_s, p50_s) -> requests/s the server really delivered over the step

Latency is measured from each request's *scheduled* arrival, so a client that falls behind shows up as
latency (no coordinated omission). Requests still outstanding beyond ``max_outstanding`` are not sent and
count as errors (the server cannot keep up with the rate). perf_analyzer does the same with
``--request-rate-range R --request-distribution poisson`` (``perf.pa_driver.build_argv(request_rate=R)``).
"""

from __future__ import annotations

import asyncio
import time

import numpy as np

from .loadgen import StepResult, _Client, summarize

HELD_SHARE = 0.95


def arrivals(rate: float, duration_s: float, seed: int = 0) -> np.ndarray:
    """Poisson arrival times in [0, duration_s): cumulative exponential gaps with mean 1 / rate."""
    rng = np.random.default_rng(seed)
    n = int(rate * duration_s * 1.5) + 16
    t = np.cumsum(rng.exponential(1.0 / rate, size=n))
    while t[-1] < duration_s:  # rare: draw more
        t = np.concatenate([t, t[-1] + np.cumsum(rng.exponential(1.0 / rate, size=n))])
    return t[t < duration_s]


async def _run_rate(protocol, url, model, feeds, outputs, rate, batch, warmup_s, measurement_s, timeout_s,
                    max_outstanding, seed) -> StepResult:
    client = _Client(protocol, url, model, feeds, outputs, timeout_s)
    res = StepResult(model=model, driver=f"loadgen-{protocol}-rate", concurrency=max_outstanding, batch=batch,
                     request_rate=rate)
    latencies: list[float] = []
    last_done = [0.0]  # when the last counted answer came back
    pending: set[asyncio.Task] = set()

    async def one(i: int, scheduled: float, counted: bool) -> None:
        try:
            await client.infer(i)
            ok, err = True, ""
        except Exception as e:  # InferenceServerException, timeouts, connection errors: the step keeps them
            ok, err = False, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
        if not counted:
            return
        if ok:
            done = time.perf_counter()
            latencies.append(done - scheduled)
            last_done[0] = max(last_done[0], done)
        else:
            res.errors += 1
            if len(res.error_samples) < 5 and err not in res.error_samples:
                res.error_samples.append(err)

    offered = 0  # arrivals scheduled inside the measurement window
    t0 = time.perf_counter()
    for i, at in enumerate(arrivals(rate, warmup_s + measurement_s, seed).tolist()):  # python floats
        scheduled = t0 + at
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        counted = at >= warmup_s
        offered += int(counted)
        if len(pending) >= max_outstanding:
            res.errors += int(counted)
            continue
        task = asyncio.ensure_future(one(i, scheduled, counted))
        pending.add(task)
        task.add_done_callback(pending.discard)
    t_end = t0 + warmup_s + measurement_s
    if pending:
        _, late = await asyncio.wait(pending, timeout=timeout_s)
        for task in late:
            task.cancel()
            res.errors += 1
    await client.close()
    res.window_s = measurement_s
    res.requests = len(latencies)
    if time.perf_counter() - t_end > timeout_s:
        res.aborted = f"responses still pending {timeout_s:g} s after the last arrival"
    for k, v in summarize(latencies).items():
        setattr(res, k, v)
    drain = max(0.0, last_done[0] - t_end) if latencies else 0.0
    res.throughput = served_rate(res.requests, measurement_s, drain, (res.p50_ms or 0.0) / 1000.0) * batch
    res.throughput_window = res.throughput
    res.client = {"arrivals": offered, "offered_per_s": offered * batch / measurement_s, "drain_s": drain,
                  "served_per_s": res.throughput}
    return res


def served_rate(n: int, window_s: float, drain_s: float, p50_s: float) -> float:
    """Requests per second the server delivered: the window's ``n`` answers over the window plus the backlog's
    drain after the last arrival (``drain_s``), less the typical latency (``p50_s``) that any server keeping up
    also shows after the window. A server that keeps up drains in about one latency (the window's own rate);
    one that falls behind drains its backlog for longer (e.g. 40/s offered to a 25/s server for 5 s: 200 answers
    over about 6.5 s, 31/s, not held), although every request is answered in the end."""
    if n <= 0 or window_s <= 0:
        return 0.0
    return n / (window_s + max(0.0, drain_s - p50_s))


def run_rate(protocol: str, url: str, model: str, feeds: list[dict], outputs: list[str], rate: float,
             batch: int = 1, warmup_s: float = 1.0, measurement_s: float = 5.0, timeout_s: float = 30.0,
             max_outstanding: int = 256, seed: int = 0) -> StepResult:
    """One open-loop step at ``rate`` requests/s (Poisson arrivals)."""
    return asyncio.run(_run_rate(protocol, url, model, feeds, outputs, rate, batch, warmup_s, measurement_s,
                                 timeout_s, max_outstanding, seed))


def held(step: StepResult, budget_ms: float) -> bool:
    """The server kept up with the offered rate: >= 95% of the window's arrivals answered, and answered at
    >= 95% of the offered rate (``served_rate``: a growing backlog, drained after the window, is not keeping up,
    however large the p99 budget), p99 within the budget, no errors."""
    offered = step.client.get("arrivals", (step.request_rate or 0) * step.window_s)
    served, rate = step.client.get("served_per_s"), step.client.get("offered_per_s")
    keeps_up = served is None or not rate or served >= HELD_SHARE * rate  # answered at the rate, not only at last
    return bool(not step.errors and not step.aborted and step.p99_ms is not None and step.p99_ms <= budget_ms
            and step.requests >= HELD_SHARE * offered and keeps_up)


def _nice(x: float) -> float:
    """``x`` to two significant digits (60, 90, 140, 200 ...)."""
    if x <= 0:
        return x
    mag = 10 ** (len(str(int(x))) - 2) if x >= 10 else 1
    return float(round(x / mag) * mag) if x >= 10 else round(x, 1)


def climb(rates: list[float], step, beyond: int = 0, factor: float = 1.5) -> dict:
    """Walk the increasing ``rates`` until one is not held (``step(rate) -> (step_dict, held)``). When every given
    rate was held the ceiling is still above them, so up to ``beyond`` more rates follow, each ``factor`` x the
    last (two significant digits). ``all_held``: the last rate tried was held (the highest rate held is then a
    low bound: the server's limit lies above every rate tried)."""
    todo = sorted(float(r) for r in rates)
    tried, steps, best, extra = [], [], None, 0
    while todo:
        r = todo.pop(0)
        got, ok = step(r)
        tried.append(r)
        steps.append(got)
        if not ok:
            break
        best = r
        if not todo and extra < beyond:
            extra += 1
            todo.append(_nice(r * factor))
    return {"rates": tried, "steps": steps, "max_rate": best, "all_held": best is not None and best == tried[-1],
            "given": sorted(float(r) for r in rates)}


def rate_sweep(protocol: str, url: str, model: str, feeds: list[dict], outputs: list[str], rates: list[float],
               budget_ms: float, batch: int = 1, log=print, beyond: int = 0, **kw) -> dict:
    """Increasing rates until one is not held (past the given ones by up to ``beyond`` steps of 1.5x while they
    are all held); the highest rate held under the p99 budget (None: none)."""

    def one(r: float):
        step = run_rate(protocol, url, model, feeds, outputs, r, batch=batch, **kw)
        ok = held(step, budget_ms)
        log(f"  {model} at {r:g} req/s: served {step.throughput:.1f}/s, p99 {step.p99_ms or float('nan'):.1f} ms"
            f"{', errors ' + str(step.errors) if step.errors else ''} -> {'held' if ok else 'not held'}")
        return step.to_dict(), ok

    return {**climb(rates, one, beyond), "budget_ms": budget_ms}
