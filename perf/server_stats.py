"""Triton's statistics extension, read before and after each measurement step.

``snapshot(url, model)`` reads ``get_inference_statistics`` (gRPC) into plain numbers; ``delta(before, after)``
turns two snapshots into what happened during the step: per-request average queue and compute
(input / infer / output) times in ms, the number of inferences and executions, and the average batch the
dynamic batcher formed (``inference_count / execution_count``).

Triton credits every request of a batch with that batch's whole compute time, so ``compute_infer_ms`` is
the time one execution (one formed batch) took, as perf_analyzer reports it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

_DURATIONS = ("success", "fail", "queue", "compute_input", "compute_infer", "compute_output")


@dataclass(frozen=True)
class Snapshot:
    inference_count: int
    execution_count: int
    counts: dict  # duration name -> count
    ns: dict  # duration name -> total ns


def snapshot(url: str, model: str, timeout_s: float = 10.0) -> Snapshot:
    """The model's cumulative statistics (all versions summed). Raises on a dead server."""
    from .client import ServerClient

    return from_json(ServerClient(url).statistics(model, timeout_s))


def from_json(stats: dict) -> Snapshot:
    """A Snapshot from ``get_inference_statistics(..., as_json=True)`` (int64 fields arrive as strings)."""
    inf = exe = 0
    counts = dict.fromkeys(_DURATIONS, 0)
    ns = dict.fromkeys(_DURATIONS, 0)
    for m in stats.get("model_stats", []):
        inf += int(m.get("inference_count", 0))
        exe += int(m.get("execution_count", 0))
        s = m.get("inference_stats", {})
        for k in _DURATIONS:
            counts[k] += int(s.get(k, {}).get("count", 0))
            ns[k] += int(s.get(k, {}).get("ns", 0))
    return Snapshot(inf, exe, counts, ns)


@dataclass(frozen=True)
class StatsDelta:
    requests: int  # successful requests in the step
    failed: int
    inference_count: int  # inferences (a request of batch b counts b)
    execution_count: int  # model executions (formed batches)
    avg_batch: float | None  # inference_count / execution_count
    queue_ms: float | None  # per request
    compute_input_ms: float | None
    compute_infer_ms: float | None
    compute_output_ms: float | None
    request_ms: float | None  # whole server-side time of a successful request

    def to_dict(self) -> dict:
        return asdict(self)


def delta(before: Snapshot, after: Snapshot) -> StatsDelta:
    def avg(k: str) -> float | None:
        n = after.counts[k] - before.counts[k]
        return (after.ns[k] - before.ns[k]) / n / 1e6 if n > 0 else None

    inf = after.inference_count - before.inference_count
    exe = after.execution_count - before.execution_count
    return StatsDelta(
        requests=after.counts["success"] - before.counts["success"],
        failed=after.counts["fail"] - before.counts["fail"],
        inference_count=inf,
        execution_count=exe,
        avg_batch=inf / exe if exe > 0 else None,
        queue_ms=avg("queue"),
        compute_input_ms=avg("compute_input"),
        compute_infer_ms=avg("compute_infer"),
        compute_output_ms=avg("compute_output"),
        request_ms=avg("success"),
    )
