"""The in-process timer of ``perf.bench`` and ``perf.baseline``: warm up, then time calls of one function.

    warm_up(run, feeds, calls=3)                       -> the warm-up latencies (s); a fixed number of calls
    settle(run, feeds, window=3, tol=0.1, max_calls=30, budget_s=60)
                                                       -> warm-up until the latency settles: the median of the
                                                          last ``window`` calls within ``tol`` of the window before
    time_calls(run, feeds, max_iters, budget_s, min_iters=2) -> latencies (s) of the timed calls: up to
                                                          ``max_iters``, stopping past ``budget_s`` once
                                                          ``min_iters`` were timed
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable


def _once(run: Callable, feeds) -> float:
    t = time.perf_counter()
    run(feeds)
    return time.perf_counter() - t


def warm_up(run: Callable, feeds, calls: int = 3) -> list[float]:
    return [_once(run, feeds) for _ in range(max(calls, 0))]


def settled(lat: list[float], window: int = 3, tol: float = 0.1) -> bool:
    """Whether the last ``window`` latencies' median is within ``tol`` of the ``window`` before them."""
    if len(lat) < 2 * window:
        return False
    now, before = statistics.median(lat[-window:]), statistics.median(lat[-2 * window:-window])
    return abs(now - before) <= tol * before


def settle(run: Callable, feeds, window: int = 3, tol: float = 0.1, max_calls: int = 30,
           budget_s: float = 60.0) -> list[float]:
    """Warm up until the latency settles (``settled``), at most ``max_calls`` calls or ``budget_s`` seconds
    (then the caller's numbers carry the warm-up count, and whether it settled, with them)."""
    lat: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(lat) < max_calls and not settled(lat, window, tol):
        lat.append(_once(run, feeds))
        if time.perf_counter() > deadline:
            break
    return lat


def time_calls(run: Callable, feeds, max_iters: int, budget_s: float, min_iters: int = 2) -> list[float]:
    lat: list[float] = []
    deadline = time.perf_counter() + budget_s
    while len(lat) < max_iters:
        lat.append(_once(run, feeds))
        if len(lat) >= min_iters and time.perf_counter() >= deadline:
            break
    return lat
