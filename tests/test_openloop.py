"""Open-loop load (perf.openloop): Poisson arrivals, and the highest rate a real server holds under a p99 budget."""

from __future__ import annotations

import numpy as np
import pytest

from perf import openloop, pa_driver
from perf.loadgen import StepResult


def test_arrivals_are_poisson_at_the_asked_rate():
    t = openloop.arrivals(200.0, 50.0, seed=1)
    assert np.all(np.diff(t) > 0) and t[-1] < 50.0
    assert len(t) == pytest.approx(200 * 50, rel=0.05)
    gaps = np.diff(t)
    assert gaps.mean() == pytest.approx(1 / 200, rel=0.05)
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, rel=0.1)  # exponential: coefficient of variation 1
    assert np.array_equal(t, openloop.arrivals(200.0, 50.0, seed=1))  # reproducible


def test_a_rate_is_held_only_when_served_within_budget_without_errors():
    def step(requests, arrivals, p99, errors=0):
        return StepResult(model="m", driver="loadgen-grpc-rate", concurrency=64, requests=requests, errors=errors,
                          window_s=2.0, p99_ms=p99, request_rate=50.0, client={"arrivals": arrivals})
    assert openloop.held(step(98, 100, 10.0), 20.0)
    assert not openloop.held(step(90, 100, 10.0), 20.0)  # fell behind the arrivals
    assert not openloop.held(step(100, 100, 25.0), 20.0)  # over the p99 budget
    assert not openloop.held(step(99, 100, 10.0, errors=1), 20.0)


def test_a_backlog_drained_after_the_window_is_not_keeping_up():
    # 40/s offered to a server that answers 25/s, for 5 s: all 200 answered in the end (p99 within a large budget),
    # but the backlog took 3 s to drain after the last arrival, the median waited 1.5 s: 31/s served, not held
    served = openloop.served_rate(200, 5.0, 3.0, 1.5)
    assert served == pytest.approx(200 / 6.5)
    behind = StepResult(model="m", driver="loadgen-grpc-rate", concurrency=256, requests=200, window_s=5.0,
                        p99_ms=2900.0, request_rate=40.0, throughput=served,
                        client={"arrivals": 200, "offered_per_s": 40.0, "served_per_s": served})
    assert not openloop.held(behind, 3000.0)
    # a server keeping up drains in about one latency: the window's own rate, held
    ok = openloop.served_rate(100, 5.0, 0.05, 0.045)
    assert ok == pytest.approx(100 / 5.005)
    keeping = StepResult(model="m", driver="loadgen-grpc-rate", concurrency=256, requests=100, window_s=5.0,
                         p99_ms=60.0, request_rate=20.0, throughput=ok,
                         client={"arrivals": 100, "offered_per_s": 20.0, "served_per_s": ok})
    assert openloop.held(keeping, 3000.0)


def test_perf_analyzer_gets_a_poisson_request_rate(tmp_path):
    from generator.spec import parse_spec
    from specs import linear_model

    m = parse_spec({"models": [linear_model()]}, tmp_path / "spec.yaml").models[0]
    argv = pa_driver.build_argv("pa", "lin__onnx", "127.0.0.1:1", m, 4, tmp_path / "o.csv", None, request_rate=250)
    joined = " ".join(argv)
    assert "--request-rate-range 250:250 --request-distribution poisson" in joined
    assert "--concurrency-range" not in joined


@pytest.mark.server
def test_rate_sweep_finds_the_highest_rate_a_real_server_holds(triton_server_factory, tmp_path):
    from perf import loadgen
    from perf.soak import build_tiny

    spec, repo = build_tiny(tmp_path / "tiny")
    server = triton_server_factory(repo)
    ms = spec.models[0]
    feeds = loadgen.samples(ms, n=4)
    got = openloop.rate_sweep("grpc", server.urls.grpc, "tiny__onnx", feeds, [o.name for o in ms.outputs],
                              [10, 20000], budget_ms=5000.0, warmup_s=0.5, measurement_s=2.0, max_outstanding=32,
                              log=lambda s: None)
    low, high = got["steps"]
    assert got["max_rate"] == 10
    assert low["errors"] == 0 and low["requests"] == low["client"]["arrivals"] > 0  # every arrival answered
    assert low["p99_ms"] <= 5000.0 and low["request_rate"] == 10
    # 20 000 req/s on a tiny model over 2 shared cores: requests pile up past 32 outstanding, so not held
    assert not openloop.held(StepResult(**high), 5000.0) and high["errors"] > 0
    # a flood no machine serves (2000 arrivals in 10 ms), with room for every request and any latency: every one
    # is answered in the end, but over the backlog's drain, far below the offered rate: not held
    flood = openloop.run_rate("grpc", server.urls.grpc, "tiny__onnx", feeds, [o.name for o in ms.outputs], 200000.0,
                              warmup_s=0.0, measurement_s=0.01, max_outstanding=100000, timeout_s=120.0)
    assert flood.errors == 0 and flood.requests == flood.client["arrivals"] > 1000
    assert flood.client["served_per_s"] < 0.5 * flood.client["offered_per_s"] and flood.client["drain_s"] > 0
    assert not openloop.held(flood, 1e9)

    # through tritongen perf: the sweep per variant, in results.json and the report
    from perf.harness import run_perf

    run_dir = run_perf(server.urls.grpc, repo, tmp_path / "tiny" / "spec.yaml", ["tiny__onnx"], [1], 5000.0,
                       tmp_path / "results", "loadgen", 1.0, 200, warmup_s=0.2, baselines=False, gemm_probe=False,
                       request_rates=[10], rates_beyond=1, rounds=1, log=lambda s: None)
    import json

    res = json.loads((run_dir / "results.json").read_text())
    sweep = res["rate_sweeps"]["tiny__onnx"]["loadgen-grpc"]
    assert sweep["steps"][0]["errors"] == 0 and sweep["steps"][0]["request_rate"] == 10
    # 10 req/s held, so the sweep went on past the given rates (one step of 1.5x): the limit was not reached at 10
    assert sweep["rates"] == [10, 15] and sweep["given"] == [10]
    report = (run_dir / "report.md").read_text()
    if sweep["max_rate"] == 15:
        assert sweep["all_held"] and "tiny__onnx (loadgen-grpc): at least 15 requests/s" in report
    else:
        assert sweep["max_rate"] == 10 and not sweep["all_held"]
        assert "tiny__onnx (loadgen-grpc): 10 requests/s (rates tried: 10, 15" in report


def test_climb_goes_past_the_given_rates_only_while_every_one_is_held():
    """No server needed: ``climb`` walks any driver's steps (the held verdicts given here)."""
    limit = 70.0

    def step(r):
        return {"request_rate": r}, r <= limit

    got = openloop.climb([10, 40, 20], step, beyond=4)
    assert got["rates"] == [10, 20, 40, 60, 90] and got["max_rate"] == 60 and not got["all_held"]
    got = openloop.climb([10, 40, 20], step, beyond=1)  # the extra steps run out below the limit: a low bound
    assert got["rates"] == [10, 20, 40, 60] and got["max_rate"] == 60 and got["all_held"]
    got = openloop.climb([10, 100, 200], step, beyond=4)  # a given rate not held: nothing beyond it
    assert got["rates"] == [10, 100] and got["max_rate"] == 10 and not got["all_held"]
    got = openloop.climb([100], step, beyond=4)
    assert got["max_rate"] is None and not got["all_held"]
    assert [openloop._nice(x) for x in (2.25, 22.5, 33.75, 135.0, 1012.5)] == [2.2, 22.0, 34.0, 140.0, 1000.0]


@pytest.mark.parametrize("rates", ["5,x", "0,5", "-2"])
def test_tritongen_perf_refuses_a_bad_request_rate_in_one_line(rates, tmp_path):
    from click.testing import CliRunner

    from generator.cli import cli

    r = CliRunner().invoke(cli, ["perf", str(tmp_path / "spec.yaml"), "--repo", str(tmp_path),
                                 "--request-rates", rates])
    assert r.exit_code == 1, r.output
    assert r.output.strip().count("\n") == 0 and f"--request-rates {rates}" in r.output and "above 0" in r.output
