"""perf.stability on synthetic baseline rounds (a disturbed machine cannot be made on purpose in a test)."""

from __future__ import annotations

import pytest

from perf import stability


def _res(*tps_by_c):
    return {"kind": "eager", "threads": 2,
            "rows": [{"concurrency": c, "batch": c, "throughput": t} for c, t in tps_by_c]}


def test_rounds_combine_into_medians_with_intervals():
    got = stability.combine_rounds([_res((1, 3.6), (8, 4.0)), _res((1, 3.9), (8, 4.4)), _res((1, 3.7), (8, 4.1)),
                                    {"error": "timed out"}])
    assert got["rounds"] == 3 and got["kind"] == "eager"
    r1, r8 = got["rows"]
    assert r1["throughput"] == 3.7 and r1["throughput_rounds"] == [3.6, 3.9, 3.7]
    assert r1["throughput_ci"][0] < 3.7 < r1["throughput_ci"][1]
    assert r8["spread"] == pytest.approx(0.4 / 4.1)
    assert stability.unreliable_reason(got, {"probe_ms": 1.0}, {"probe_ms": 1.1}) is None
    assert stability.combine_rounds([{"error": "x"}]) == {"error": "x"}


def test_a_step_whose_rounds_disagree_or_whose_probe_moved_is_unreliable():
    spread = stability.combine_rounds([_res((1, 0.86)), _res((1, 3.7)), _res((1, 3.6))])
    assert "rounds differ by" in stability.unreliable_reason(spread, None, None)
    calm = stability.combine_rounds([_res((1, 3.6)), _res((1, 3.7)), _res((1, 3.65))])
    assert "probe moved 1.90x" in stability.unreliable_reason(calm, {"probe_ms": 1.0}, {"probe_ms": 1.9})
    one = stability.combine_rounds([_res((1, 3.6))])
    assert "fewer than 3" in stability.unreliable_reason(one, None, None)


def test_eager_that_speeds_up_5x_with_batch_is_implausible():
    # issue 22's disturbed baseline: 0.86/s at batch 1, 4.3/s at batch 8; measured alone 3.7 and 4.1
    assert "grows 5.0x from batch 1 to batch 8" in stability.batching_plausible(
        _res((1, 0.86), (8, 4.3))["rows"], "eager")
    assert stability.batching_plausible(_res((1, 3.7), (8, 4.1))["rows"], "eager") is None
    assert stability.batching_plausible(_res((1, 10), (8, 80))["rows"], "onnxruntime") is None  # no limit known


def test_quiet_check_reads_load_and_times_a_fixed_probe():
    q = stability.quiet_check(probe_s=0.05)
    assert q["load1"] >= 0 and q["probe_ms"] > 0 and q["cores"] >= 1
    # and the memory probe (a 64 MiB copy, beyond the cache): 64 MiB read + written in under 10 s on any machine
    assert 0 < q["memory_ms"] < 10_000
    assert stability.drift(q, q) == 1.0 and stability.drift(None, q) == 1.0


def test_warm_up_lasts_until_the_latency_settles():
    from perf import timer

    falling = [0.9, 0.5, 0.3, 0.2, 0.12, 0.1]  # still getting faster: not settled
    assert not timer.settled(falling)
    assert timer.settled(falling + [0.1, 0.101, 0.099, 0.1])
    assert not timer.settled([0.1] * 5)  # too few calls to judge
    calls = []
    warm = timer.settle(lambda f: calls.append(f), "x", max_calls=12, budget_s=60)
    assert 6 <= len(warm) == len(calls) <= 12 and set(calls) == {"x"}
