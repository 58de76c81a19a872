"""``tune:`` — the search space and goal of ``tritongen tune`` for one model, read with the spec and kept in
``ModelSpec.tune``. Every axis is optional: ``None`` axes are derived from the spec and the machine by perf/tune.

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
from typing import Annotated, Any, Literal, Optional

from pydantic import AfterValidator, BeforeValidator, Field, ValidationError

from .base import Mapping, NonNegFloat, NonNegInt, PosInt, Str, fail, spec_type

OBJECTIVES = ("throughput", "latency", "rate")


def _nonempty(v: Any) -> Any:
    if isinstance(v, (list, tuple)) and not v:
        raise fail("empty; give at least one value or remove it")
    return v


def _sorted(v: Any) -> Any:
    return tuple(sorted(set(v))) if v is not None else None


def _axis(item):
    return Annotated[Optional[tuple[item, ...]], BeforeValidator(_nonempty), AfterValidator(_sorted)]


def _names(v: Any) -> Any:
    if v is not None and (not isinstance(v, (list, tuple)) or not v or not all(isinstance(x, str) and x for x in v)):
        raise fail("expected a non-empty list of variant names")
    return tuple(v) if v is not None else None


@spec_type
class TuneSettings(Mapping):
    """The search space and goal for one model. ``None`` axes are derived from the spec and the machine."""

    variants: Annotated[Optional[tuple[Str, ...]], BeforeValidator(_names)] = Field(
        default=None, description="Variants to search (default: every gate-passed one).")
    instances: _axis(PosInt) = Field(default=None, description="Instance counts (default: 1 .. cores).")
    max_batch_size: _axis(PosInt) = Field(default=None, description="max_batch_size values (<= the verified one).")
    queue_delay_us: _axis(NonNegInt) = Field(default=None, description="max_queue_delay_microseconds values.")
    threads: _axis(NonNegInt) = Field(default=None, description="Runtime threads per instance (0 = runtime default).")
    objective: Literal["throughput", "latency", "rate"] = Field(
        default="throughput", description="Maximise throughput, minimise p99, or the highest Poisson rate held (rate).")
    latency_budget_ms: Optional[NonNegFloat] = Field(default=None, description="p99 constraint (ms).")
    min_throughput: Optional[NonNegFloat] = Field(default=None, description="Throughput constraint (inferences/s).")
    max_memory_mb: Optional[NonNegFloat] = Field(default=None, description="Server memory constraint for the model (MB).")


TUNE_KEYS = tuple(f.name for f in dataclasses.fields(TuneSettings))


def parse_tune(raw, where: str) -> TuneSettings:
    """A ``tune:`` mapping (or None) read on its own, with the spec's field-path errors."""
    from pydantic import TypeAdapter

    from .errors import user_error

    try:
        return TypeAdapter(TuneSettings).validate_python(raw or {})
    except ValidationError as e:
        raise user_error(e, where) from None
