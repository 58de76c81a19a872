"""The spec's ``tune:`` section (the search space and goal of ``tritongen tune``), validated with the spec.

Every axis is optional: what is not given is derived from the spec and the machine by ``perf.tune``.

    tune:
      variants: [onnx, onnx-int8]         # default: every variant whose gate passed
      instances: [1, 2]                   # default: 1 .. cores
      max_batch_size: [4, 8, 16]          # default: powers of two up to the verified max_batch_size
      queue_delay_us: [0, 2000, 20000]    # default: 0, 500, 2000, 10000, 20000, 50000
      threads: [1, 2]                     # per-instance runtime threads; default: 1 and powers of two <= cores
      objective: throughput               # or latency (minimise p99), or rate (the highest Poisson rate held)
      latency_budget_ms: 100              # p99 constraint
      min_throughput: 50                  # inferences/s constraint
      max_memory_mb: 2048                 # server memory for the model
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from .errors import UserError

OBJECTIVES = ("throughput", "latency", "rate")


@dataclass(frozen=True)
class TuneSettings:
    """The search space and goal for one model. ``None`` axes are derived from the spec and the machine."""

    variants: tuple[str, ...] | None = None
    instances: tuple[int, ...] | None = None
    max_batch_size: tuple[int, ...] | None = None
    queue_delay_us: tuple[int, ...] | None = None
    threads: tuple[int, ...] | None = None
    objective: str = "throughput"
    latency_budget_ms: float | None = None
    min_throughput: float | None = None
    max_memory_mb: float | None = None


TUNE_KEYS = tuple(f.name for f in dataclasses.fields(TuneSettings))


def parse_tune(raw, where: str) -> TuneSettings:
    """The spec's ``tune:`` mapping (or {}), with the spec's field-path errors."""
    from .spec import _Fields, _int

    f = _Fields(raw or {}, where, TUNE_KEYS)

    def ints(key: str, minimum: int) -> tuple[int, ...] | None:
        if not f.has(key):
            return None
        v = f.list(key)
        if not v:
            raise UserError(f"{f.path(key)}: empty; give at least one value or remove it")
        return tuple(sorted({_int(x, f"{f.path(key)}[{j}]", minimum) for j, x in enumerate(v)}))

    variants = None
    if f.has("variants"):
        v = f.list("variants")
        if not v or not all(isinstance(x, str) and x for x in v):
            raise UserError(f"{f.path('variants')}: expected a non-empty list of variant names")
        variants = tuple(v)
    objective = f.str("objective", "throughput")
    if objective not in OBJECTIVES:
        raise UserError(f"{f.path('objective')}: '{objective}' is not one of {', '.join(OBJECTIVES)}")
    return TuneSettings(
        variants=variants, instances=ints("instances", 1), max_batch_size=ints("max_batch_size", 1),
        queue_delay_us=ints("queue_delay_us", 0), threads=ints("threads", 0), objective=objective,
        latency_budget_ms=f.float("latency_budget_ms"), min_throughput=f.float("min_throughput"),
        max_memory_mb=f.float("max_memory_mb"),
    )
