"""Confirmation: configurations re-measured in alternating rounds, compared round by round with an interval.

Shared by ``tritongen tune`` (its finalists vs the spec's config) and ``perf.tune_vs_ma`` (our winner vs Model
Analyzer's). Rounds alternate the configurations in one server (the order rotates each round), so a slow
phase of the machine hits every configuration alike; the comparison is the geometric mean of the per-round
ratios with a 95% Student-t interval on their logs.

    rotations(items, rounds)  -> one order per round (rotated by one each round)
    ratio_interval(ratios)    -> (geometric mean, low, high)
    paired(a_rounds, b_rounds, value) -> the interval of a / b over the rounds where both are > 0
    verdict_word(low, high)   -> "better" | "worse" | "not distinguishable"
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence


def rotations(items: Sequence, rounds: int) -> list[list]:
    """Round ``r`` measures ``items`` starting at ``r mod len(items)``: each one goes first in turn."""
    n = len(items)
    return [list(items[r % n:]) + list(items[:r % n]) for r in range(rounds)] if n else []


def t_quantile(df: int, level: float = 0.95) -> float:
    from scipy.stats import t

    return float(t.ppf(0.5 + level / 2, df))


def ratio_interval(ratios: Sequence[float], level: float = 0.95) -> tuple[float, float, float]:
    """Geometric mean of per-round ratios and its ``level`` t interval (on logs); (0, 0, 0) without ratios,
    (mean, 0, inf) from one."""
    logs = [math.log(r) for r in ratios if r > 0]
    if not logs:
        return 0.0, 0.0, 0.0
    mean = sum(logs) / len(logs)
    if len(logs) < 2:
        return math.exp(mean), 0.0, float("inf")
    sd = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))
    half = t_quantile(len(logs) - 1, level) * sd / math.sqrt(len(logs))
    return math.exp(mean), math.exp(mean - half), math.exp(mean + half)


def paired(a_rounds: Sequence[dict], b_rounds: Sequence[dict], value: Callable[[dict], float | None]
           ) -> tuple[float, float, float] | None:
    """``value(a) / value(b)`` round by round (rounds where both are positive); None when there is none."""
    rs = []
    for a, b in zip(a_rounds, b_rounds):
        va, vb = value(a), value(b)
        if va and vb and va > 0 and vb > 0:
            rs.append(va / vb)
    return ratio_interval(rs) if rs else None


def verdict_word(low: float, high: float) -> str:
    """An interval that excludes 1 is a difference; one that includes it is not."""
    return "better" if low > 1 else "worse" if high < 1 else "not distinguishable"
