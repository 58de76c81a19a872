"""What the two INT8 recipe searches (variants/onnx_int8.py, openvino_int8.py) share: how an attempt is timed,
recorded and chosen.

Every full-INT8 recipe is tried (within ``search_budget_s``); each one that passes the gate is timed in-process
on one fixed batch (the median of a few runs, after a warm-up) and the fastest passing one is kept. Recipes that
keep nodes in float (exclusions, accuracy control) are tried only when no full-INT8 recipe passes.
Timings are of this machine at build time: a ranking among recipes measured side by side, not a benchmark.
"""

from __future__ import annotations

import statistics
import time

from generator.loading.inputs import Point, make_inputs
from generator.spec import ModelSpec

TIMING_RUNS = 5
TIMING_BATCH = 8


def time_batch(run, model: ModelSpec, runs: int = TIMING_RUNS) -> dict:
    """Median milliseconds of ``run`` on one fixed batch of random inputs (a warm-up first)."""
    batch = max(1, min(TIMING_BATCH, model.max_batch_size)) if model.max_batch_size > 0 else 0
    feeds = make_inputs(model, Point(batch, tuple(sorted(model.dims_at("opt").items()))), seed=99)
    run(feeds)
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        run(feeds)
        times.append((time.perf_counter() - t) * 1000)
    return {"ms": round(statistics.median(times), 3), "batch": batch, "runs": runs}


def fastest(passing: list[tuple[object, dict]]):
    """The recipe of the fastest passing attempt ((recipe, attempt record) pairs), or None."""
    if not passing:
        return None
    return min(passing, key=lambda p: p[1]["speed"]["ms"])[0]


def attempt_line(index: int, label: str, v, seconds: float, speed: dict | None) -> str:
    """One build.log line per attempt: the gate's numbers, the speed of a passing one, the time spent."""
    ms = f", {speed['ms']:.1f} ms per batch of {speed['batch']}" if speed else ""
    return f"recipe {index} [{label}]: {'passed' if v.passed else 'failed'} ({v.summary}){ms} in {seconds:.1f}s"
