"""The built-in load generator: closed-loop asyncio clients on tritonclient (gRPC ``aio`` or HTTP ``aio``).

One step = one concurrency level ``c``: ``c`` workers each keep one request in flight. A warm-up phase
(``warmup_requests`` completions or ``warmup_s``, whichever comes first; with ``settle=True`` until the
latency settles -- ``perf.timer.settled`` on the warm-up latencies, windows of ``max(3, c)`` completions --
with ``warmup_s`` as the cap) is followed by a measurement window that closes at ``max_requests``
completions or ``measurement_s`` seconds, whichever comes first (with ``whole_cycles=True`` the seconds
are extended, up to 4x, until every worker sent twice inside the window, so the cycle throughput exists).
Every request has a client timeout, and the whole step a hard deadline, so a step always ends.

Inputs come from the spec (``samples``): declared shapes, dtypes and integer ranges, named dims at their
``opt`` value, via ``generator.loading.inputs``; or the calibration ``.npz`` when the spec names one. Never a
hand-written shape.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from generator.loading.inputs import Point, make_inputs
from generator.spec import ModelSpec

PERCENTILES = (50, 90, 95, 99)


# ------------------------------------------------------------------------------------------- inputs


def spec_point(model: ModelSpec, batch: int = 1) -> Point:
    """Batch ``batch`` (0 when the model takes no batch dim) at the named dims' ``opt`` values."""
    return Point(batch if model.max_batch_size > 0 else 0, tuple(sorted(model.dims_at("opt").items())))


def samples(model: ModelSpec, root=None, n: int = 4, batch: int = 1, use_calibration: bool = True) -> list[dict]:
    """``n`` request feeds of batch ``batch``: calibration data when the spec has an ``.npz``, else random
    tensors made by ``generator.loading.inputs.make_inputs`` from the declared inputs."""
    cal = model.calibration.data
    if use_calibration and cal is not None and cal.suffix == ".npz" and cal.is_file() and batch <= 1:
        from generator.loading.calibration import calibration_samples

        got = calibration_samples(model, root or cal.parent, lambda s: None)[:n]
        if got:
            return api_feeds(model, got)
    point = spec_point(model, batch)
    return api_feeds(model, [make_inputs(model, point, seed=1000 + i) for i in range(n)])


def api_feeds(model: ModelSpec, feeds: list[dict]) -> list[dict]:
    """Model-facing feeds as a client sends them: a per-sample scalar input (shape []) is served as dims [1] with
    ``reshape: { shape: [ ] }`` (generator.config.render), so the client sends [batch, 1] where the model takes
    [batch] (and [1] for a model without a batch dim)."""
    scalars = {t.name for t in model.inputs if not t.shape}
    if not scalars:
        return feeds
    return [{k: (v[..., None] if k in scalars else v) for k, v in f.items()} for f in feeds]


def batch_of(feeds: dict, model: ModelSpec) -> int:
    if model.max_batch_size <= 0:
        return 1
    return int(next(iter(feeds.values())).shape[0])


# ------------------------------------------------------------------------------------------- results


@dataclass
class StepResult:
    """One measured concurrency level of one model, from the load generator or perf_analyzer."""

    model: str  # the Triton model name
    driver: str  # loadgen-grpc | loadgen-http | perf_analyzer
    concurrency: int
    batch: int = 1
    requests: int = 0  # successful requests in the window
    errors: int = 0
    window_s: float = 0.0
    throughput: float = 0.0  # inferences/s (requests/s x batch): from the workers' cycles when each made 2+ sends
    throughput_window: float | None = None  # completions in the window / window (set when cycles were used)
    p50_ms: float | None = None
    p90_ms: float | None = None
    p95_ms: float | None = None
    p99_ms: float | None = None
    avg_ms: float | None = None
    error_samples: list = field(default_factory=list)
    aborted: str = ""  # why the step ended early (server gone), else ""
    server: dict = field(default_factory=dict)  # perf.server_stats.StatsDelta.to_dict()
    client: dict = field(default_factory=dict)  # perf_analyzer's client-side breakdown (ms)
    request_rate: float | None = None  # open loop (perf.openloop): the offered Poisson rate, requests/s
    warmup: dict = field(default_factory=dict)  # {"requests", "s", "settled"}: how the warm-up ended

    def to_dict(self) -> dict:
        return asdict(self)


def summarize(latencies_s: list[float]) -> dict:
    if not latencies_s:
        return {f"p{p}_ms": None for p in PERCENTILES} | {"avg_ms": None}
    a = np.asarray(latencies_s) * 1000.0
    out = {f"p{p}_ms": float(np.percentile(a, p)) for p in PERCENTILES}
    out["avg_ms"] = float(a.mean())
    return out


# ------------------------------------------------------------------------------------------- clients


def _dtype_name(arr: np.ndarray) -> str:
    from tritonclient.utils import np_to_triton_dtype

    return np_to_triton_dtype(arr.dtype)


class _Client:
    """A tritonclient aio client with prebuilt InferInputs per sample (serialised once, reused)."""

    def __init__(self, protocol: str, url: str, model: str, feeds: list[dict], outputs: list[str], timeout_s: float):
        self.protocol, self.model, self.timeout_s = protocol, model, timeout_s
        if protocol == "grpc":
            import tritonclient.grpc as mod
            import tritonclient.grpc.aio as aio

            self.client = aio.InferenceServerClient(url)
        elif protocol == "http":
            import tritonclient.http as mod
            import tritonclient.http.aio as aio

            self.client = aio.InferenceServerClient(url, conn_timeout=timeout_s)
        else:
            raise ValueError(f"protocol {protocol!r}: grpc or http")
        self.requests = []
        for f in feeds:
            inputs = []
            for name, arr in f.items():
                inp = mod.InferInput(name, list(arr.shape), _dtype_name(arr))
                if protocol == "http":
                    inp.set_data_from_numpy(np.ascontiguousarray(arr), binary_data=True)
                else:
                    inp.set_data_from_numpy(np.ascontiguousarray(arr))
                inputs.append(inp)
            outs = [mod.InferRequestedOutput(o, binary_data=True) if protocol == "http" else mod.InferRequestedOutput(o)
                    for o in outputs]
            self.requests.append((inputs, outs))

    async def infer(self, i: int) -> None:
        inputs, outs = self.requests[i % len(self.requests)]
        if self.protocol == "grpc":
            await self.client.infer(self.model, inputs, outputs=outs, client_timeout=self.timeout_s)
        else:
            await asyncio.wait_for(self.client.infer(self.model, inputs, outputs=outs), self.timeout_s)

    async def close(self) -> None:
        try:
            await self.client.close()
        except Exception as e:  # closing a channel to a dead server: nothing left to release, say so and go on
            logging.getLogger(__name__).info("closing the %s client: %s: %s", self.model, type(e).__name__, e)


def cycle_throughput(starts: list[list[float]], t_open: float, t_close: float) -> float | None:
    """Requests/s of a closed loop from each worker's send-to-send cycles inside the window (each worker's
    sends in it, first to last: whole cycles), summed over workers; None when a worker sent fewer than 2
    requests in the window (then the plain count / window is all there is).

    Counting completions in a fixed window is quantised when responses come in bursts (a batch of 8 answers
    8 requests at once): a 1.5 s window holds 2 or 3 bursts of a 600 ms batch, +-20%. A worker's cycles are
    whole request round trips (its own client time included), so their rate has no such edge effect."""
    total = 0.0
    for ts in starts:
        inside = [t for t in ts if t_open <= t <= t_close]
        if len(inside) < 2 or inside[-1] <= inside[0]:
            return None
        total += (len(inside) - 1) / (inside[-1] - inside[0])
    return total


async def _run_step(protocol, url, model, feeds, outputs, concurrency, batch, warmup_requests, warmup_s,
                    measurement_s, max_requests, timeout_s, settle=False, whole_cycles=False) -> StepResult:
    from .timer import settled

    client = _Client(protocol, url, model, feeds, outputs, timeout_s)
    res = StepResult(model=model, driver=f"loadgen-{protocol}", concurrency=concurrency, batch=batch)
    latencies: list[float] = []
    warm_lat: list[float] = []  # the warm-up's successful latencies, in completion order (settle)
    settle_window = max(3, concurrency)  # a closed loop at c answers in bursts of up to c: compare whole bursts
    starts: list[list[float]] = [[] for _ in range(concurrency)]  # each worker's send times (cycle throughput)
    state = {"phase": "warmup", "warm": 0, "open": None, "close": None, "errors_in_row": 0, "n": 0}
    t0 = time.perf_counter()
    warm_deadline = t0 + warmup_s

    def open_window(now: float) -> None:
        state["phase"], state["open"] = "measure", now
        res.warmup = {"requests": state["warm"], "s": round(now - t0, 3),
                      "settled": settled(warm_lat, settle_window) if settle else None}

    def whole(now: float) -> bool:
        """Every worker sent at least twice inside the window (or the 4x extension is used up)."""
        if not whole_cycles or now - state["open"] >= 4 * measurement_s:
            return True
        return all(sum(1 for t in ts if t >= state["open"]) >= 2 for ts in starts)

    def close_window(now: float, why: str = "") -> None:
        if state["phase"] != "done":
            state["phase"], state["close"] = "done", now
            if why:
                res.aborted = why

    async def worker(k: int) -> None:
        while state["phase"] != "done":
            i = state["n"]
            state["n"] += 1
            start = time.perf_counter()
            starts[k].append(start)
            try:
                await client.infer(i)
                ok, err = True, ""
            except Exception as e:  # InferenceServerException, timeouts, connection errors
                ok, err = False, f"{type(e).__name__}: {' '.join(str(e).split())[:200]}"
            end = time.perf_counter()
            phase = state["phase"]
            if ok:
                state["errors_in_row"] = 0
            else:
                state["errors_in_row"] += 1
                if len(res.error_samples) < 5 and err not in res.error_samples:
                    res.error_samples.append(err)
                # the server is gone or refuses everything: end the step now, not at the deadline
                if state["errors_in_row"] >= max(3, 2 * concurrency):
                    close_window(end, f"{state['errors_in_row']} consecutive errors, last: {err}")
                    return
                await asyncio.sleep(0.02)
            if phase == "warmup":
                state["warm"] += 1
                if ok:
                    warm_lat.append(end - start)
                done = (state["warm"] >= warmup_requests and settled(warm_lat, settle_window)) if settle \
                    else state["warm"] >= warmup_requests
                if done or end >= warm_deadline:
                    if state["phase"] == "warmup":
                        open_window(end)
            elif phase == "measure":
                if ok:
                    latencies.append(end - start)
                else:
                    res.errors += 1
                if len(latencies) + res.errors >= max_requests:
                    close_window(end)

    async def timer() -> None:
        while state["phase"] != "done":
            now = time.perf_counter()
            if state["phase"] == "warmup" and now >= warm_deadline:
                open_window(now)
            if state["phase"] == "measure" and now - state["open"] >= measurement_s and whole(now):
                close_window(now)
            await asyncio.sleep(0.01)

    hard = warmup_s + (4 if whole_cycles else 1) * measurement_s + 2 * timeout_s + 5
    tasks = [asyncio.ensure_future(worker(k)) for k in range(concurrency)]
    tick = asyncio.ensure_future(timer())
    try:
        await asyncio.wait_for(asyncio.gather(*tasks), hard)
    except asyncio.TimeoutError:
        close_window(time.perf_counter(), f"step did not end within {hard:.0f} s")
    finally:
        close_window(time.perf_counter())
        tick.cancel()
        for t in tasks:
            t.cancel()
        await asyncio.gather(tick, *tasks, return_exceptions=True)
        await client.close()
    if state["open"] is not None:
        res.window_s = max(state["close"] - state["open"], 1e-9)
    res.requests = len(latencies)
    res.throughput = res.requests * batch / res.window_s if res.window_s else 0.0
    if state["open"] is not None and not res.errors:
        cyc = cycle_throughput(starts, state["open"], state["close"])
        if cyc is not None:
            res.throughput_window, res.throughput = res.throughput, cyc * batch
    for k, v in summarize(latencies).items():
        setattr(res, k, v)
    return res


def run_step(protocol: str, url: str, model: str, feeds: list[dict], outputs: list[str], concurrency: int,
             batch: int = 1, warmup_requests: int = 4, warmup_s: float = 5.0, measurement_s: float = 10.0,
             max_requests: int = 1000, timeout_s: float = 60.0, settle: bool = False,
             whole_cycles: bool = False) -> StepResult:
    """Measure one concurrency level; returns within ``warmup_s + measurement_s + 2 * timeout_s + 5`` s
    (``4 * measurement_s`` with ``whole_cycles``)."""
    return asyncio.run(_run_step(protocol, url, model, feeds, outputs, concurrency, batch, warmup_requests,
                                 warmup_s, measurement_s, max_requests, timeout_s, settle, whole_cycles))
