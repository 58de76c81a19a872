"""The perf harness against a real tritonserver (python backend) serving a tiny model built by tritongen."""

from __future__ import annotations

import json
import os
import signal
import threading
import time

import pytest
from specs import linear_model, write_spec

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import load_spec
from generator.serve.server import TritonServer
from perf import loadgen, pa_driver, server_stats
from perf.harness import run_perf

pytestmark = pytest.mark.server


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A spec and an embedded repository: lin__onnx and lin__torchscript (1 thread each, dynamic batching)."""
    d = tmp_path_factory.mktemp("perf")
    spec_path = write_spec(d, {"models": [linear_model(
        variants=["onnx", "torchscript"],
        triton={"dynamic_batching": {"max_queue_delay_microseconds": 500}, "intra_op_threads": 1})]})
    spec = load_spec(spec_path)
    report = build(spec, d / "repo", d / "build", target="embedded")
    assert [r.status for r in report.results] == ["built", "built"]
    return {"spec_path": spec_path, "spec": spec, "repo": d / "repo", "model": spec.model("lin")}


@pytest.fixture(scope="module")
def served(built, triton_install, tmp_path_factory):
    server = TritonServer(built["repo"], install=triton_install,
                          log_path=tmp_path_factory.mktemp("log") / "tritonserver.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_load_generator_measures_the_real_server(served, built, protocol):
    model = built["model"]
    feeds = loadgen.samples(model, n=4)
    url = served.urls.grpc if protocol == "grpc" else served.urls.http
    before = server_stats.snapshot(served.urls.grpc, "lin__onnx")
    step = loadgen.run_step(protocol, url, "lin__onnx", feeds, ["y"], concurrency=4, warmup_requests=8,
                            warmup_s=1.0, measurement_s=2.0, max_requests=100_000)
    delta = server_stats.delta(before, server_stats.snapshot(served.urls.grpc, "lin__onnx"))
    assert step.errors == 0 and not step.aborted and step.driver == f"loadgen-{protocol}"
    assert step.requests > 20
    assert step.throughput == pytest.approx(step.requests / step.window_s, rel=0.05)
    assert 1.5 < step.window_s < 10.0  # the 2 s cap closed the window (bounded, not a speed check)
    assert 0 < step.p50_ms <= step.p90_ms <= step.p95_ms <= step.p99_ms
    assert delta.requests >= step.requests + 8  # warm-up and window both reached the server
    assert delta.compute_infer_ms > 0 and delta.queue_ms is not None and delta.avg_batch >= 1.0


def test_warm_up_lasts_until_the_latency_settles_and_the_window_holds_whole_cycles(served, built):
    feeds = loadgen.samples(built["model"], n=2)
    step = loadgen.run_step("grpc", served.urls.grpc, "lin__onnx", feeds, ["y"], concurrency=4, warmup_requests=2,
                            warmup_s=20.0, measurement_s=0.5, max_requests=100_000, settle=True, whole_cycles=True)
    assert step.errors == 0 and step.warmup["settled"] is True
    assert step.warmup["requests"] >= 2 * 4  # two windows of max(3, c) completions compared, not a fixed count
    assert step.warmup["s"] < 20.0 and step.throughput_window is not None  # cycles inside the window: all workers


def test_request_cap_ends_the_window(served, built):
    feeds = loadgen.samples(built["model"], n=2)
    t = time.monotonic()
    step = loadgen.run_step("grpc", served.urls.grpc, "lin__torchscript", feeds, ["y"], concurrency=2,
                            warmup_requests=2, warmup_s=5.0, measurement_s=60.0, max_requests=25)
    assert time.monotonic() - t < 40  # far below the 60 s window: the request cap ended it
    assert step.requests == 25 and step.errors == 0 and step.window_s < 30


def test_perf_analyzer_driver_short_window(served, built, perf_analyzer_install, tmp_path):
    model = built["model"]
    data = pa_driver.write_input_data(pa_driver.unbatched(loadgen.samples(model, n=2), model), tmp_path / "d.json")
    argvs: list = []
    step = pa_driver.run_step(perf_analyzer_install, "lin__onnx", served.urls.grpc, model, 2, tmp_path, data,
                              measurement_ms=400, stability_pct=50, commands=argvs)
    assert not step.aborted, step.aborted
    assert step.driver == "perf_analyzer" and step.concurrency == 2
    assert step.throughput, "perf_analyzer measured no inferences"
    assert step.p50_ms <= step.p99_ms
    br = step.server["perf_analyzer"]
    assert br["compute_infer_ms"] > 0 and br["queue_ms"] is not None
    assert "--input-data" in argvs[0] and "2:2" in argvs[0]


def test_run_perf_against_a_url_skips_a_model_that_is_not_ready(built, triton_server_factory, tmp_path):
    # explicit model control: only lin__onnx is loaded, lin__torchscript is in the repository but not READY
    server = triton_server_factory(built["repo"], model_control_mode="explicit", expected_models=[],
                                   extra_args=["--load-model", "lin__onnx"])
    run_dir = run_perf(server.urls.grpc, built["repo"], built["spec_path"], None, [1, 2], 100.0,
                       tmp_path / "results", "loadgen", 0.5, 200, warmup_s=0.2, gemm_probe=True,
                       http_url=server.urls.http, protocol="both", rounds=2, headline_rounds=2, log=lambda s: None)
    res = json.loads((run_dir / "results.json").read_text())
    assert "not READY" in res["models"]["lin__torchscript"]["skipped"]
    steps = {(s["model"], s["driver"], s["concurrency"]) for s in res["steps"]}
    assert steps == {("lin__onnx", d, c) for d in ("loadgen-grpc", "loadgen-http") for c in (1, 2)}
    # two rounds of every step (medians with intervals); the spread ones re-measured once in two more rounds
    for s in res["steps"]:
        assert s["rounds"] == 2 and len(s["throughput_rounds"]) == 2 and s["throughput_ci"][0] > 0
        assert s["p99_ms_ci"][0] <= s["p99_ms"] <= s["p99_ms_ci"][1] or s["p99_ms_ci"][1] == float("inf")
        assert s["drift"] > 0 and s.get("remeasured", False) == ("first_attempt" in s)
    again = sum(1 for s in res["steps"] if s.get("remeasured"))
    assert len(res["round_steps"]) == 2 * 4 + 2 * again
    assert {r["round"] for r in res["round_steps"]} == {1, 2}
    win = res["winners"]["lin"]
    grpc = [r for r in res["rows"] if r["driver"] == "loadgen-grpc" and r["p99_ms"] <= 100.0]
    # the best variant only from reliable steps; lin__onnx is the only variant here, so a faster unreliable step of
    # its own does not unseat its reliable one (perf.report's winner rule): no winner only when every step within
    # the budget is unreliable
    if any(not r.get("unreliable") for r in grpc):
        assert win["triton_name"] == "lin__onnx", win
        # its headline from 2 paired rounds beside it after the sweep (perf.headline), at its own concurrency
        got = res["headline"]["lin"]
        assert got["concurrency"] == win["concurrency"] and len(got["rounds"]) == 2, got
        assert win["headline"]["x_eager"].get("value") == got["x_eager"].get("value"), (win, got)
    else:
        assert win["triton_name"] is None and "unreliable" in win["why"], win
    # baselines ran in their own processes, same runtime and threads; eager from the spec's module
    assert res["baselines"]["lin__onnx"]["threads"] == 1 and res["baselines"]["lin__onnx"]["rows"][0]["throughput"] > 0
    assert res["eager"]["lin"]["rows"][1]["concurrency"] == 2
    assert res["flops"]["lin"]["flops_per_inference"] == 2 * 4 * 3
    assert "lin__torchscript" in (run_dir / "report.md").read_text()  # the skip and its reason are reported
    # the winner's per-operator profile (perf.opprofile, own process) at its concurrency, in the report
    # (with no best named, the fastest step within the budget: its profile still shows where the time goes). The
    # winner's step need not be the fastest: a faster unreliable step of its own does not unseat it (seen in CI)
    prof = res["opprofile"]["lin"]
    fastest = max(grpc, key=lambda r: r["throughput"])
    at = win["concurrency"] if win["triton_name"] else fastest["concurrency"]
    assert prof["triton_name"] == "lin__onnx" and prof["batch"] == at, (prof, win)
    assert prof["classes"]["gemm"]["flops"] == 2 * 4 * 3 * prof["batch"]
    assert "## Where the time goes" in (run_dir / "report.md").read_text()
    assert any("perf.baseline" in c for c in (run_dir / "commands.txt").read_text().splitlines())


def test_embedded_run_with_both_drivers_writes_the_report(built, triton_install, tmp_path):
    run_dir = run_perf(None, built["repo"], built["spec_path"], ["lin__onnx"], [1, 2], 100.0, tmp_path / "results",
                       "both", 0.5, 300, warmup_s=0.2, pa_measurement_ms=300, baselines=False, gemm_probe=False,
                       rounds=1, install=triton_install, log=lambda s: None)
    res = json.loads((run_dir / "results.json").read_text())
    drivers = {(s["driver"], s["concurrency"]) for s in res["steps"]}
    assert drivers == {("loadgen-grpc", 1), ("loadgen-grpc", 2), ("perf_analyzer", 1), ("perf_analyzer", 2)}
    assert res["meta"]["server_version"] == "2.51.0" and not res["partial"]
    for f in ("report.md", "report.html", "results.csv", "commands.txt", "lin_throughput.png", "lin_latency.png"):
        assert (run_dir / f).is_file()
    cmds = (run_dir / "commands.txt").read_text()
    assert "tritonserver --model-repository" in cmds and "perf_analyzer -m lin__onnx" in cmds


def test_server_killed_mid_sweep_stops_keeps_finished_steps_and_raises(built, triton_server_factory, tmp_path):
    server = triton_server_factory(built["repo"])
    killer = threading.Timer(4.0, lambda: os.killpg(server.pid, signal.SIGKILL))
    t = time.monotonic()
    killer.start()
    try:
        with pytest.raises(UserError, match=r"stopped responding during .*finished step\(s\) are in") as err:
            run_perf(server.urls.grpc, built["repo"], built["spec_path"], ["lin__onnx"], list(range(1, 41)), 100.0,
                     tmp_path / "results", "loadgen", 1.0, 100_000, warmup_s=0.1, baselines=False,
                     gemm_probe=False, request_timeout_s=5.0, log=lambda s: None)
    finally:
        killer.cancel()
    assert time.monotonic() - t < 30
    assert "\n" not in str(err.value)
    (run_dir,) = (tmp_path / "results").iterdir()
    res = json.loads((run_dir / "results.json").read_text())
    assert res["partial"] and 1 <= len(res["steps"]) < 40
    assert all(s["errors"] == 0 for s in res["steps"])  # only clean, finished steps are kept
    assert "PARTIAL RUN" in (run_dir / "report.md").read_text()


def test_a_spec_that_is_not_the_repositorys_and_a_budget_of_zero_are_one_line_errors(built, tmp_path):
    """Nothing is served and no run folder is written: the spec names none of the repository's models (a report
    of skipped rows is no answer), or the p99 budget is not a positive number."""
    other = write_spec(tmp_path, {"models": [linear_model(name="elsewhere")]})
    with pytest.raises(UserError) as e:
        run_perf(None, built["repo"], other, None, [1], 100.0, tmp_path / "results", "loadgen", 0.5, 50,
                 log=lambda s: None)
    assert str(e.value) == ("spec.yaml: none of repo's models (lin) is in it; give the spec the repository was "
                            "built from")
    with pytest.raises(UserError) as e:
        run_perf(None, built["repo"], built["spec_path"], None, [1], 0.0, tmp_path / "results", "loadgen", 0.5, 50,
                 log=lambda s: None)
    assert str(e.value).startswith("--latency-budget-ms 0: give the p99 budget in ms")
    assert not (tmp_path / "results").exists()


def test_headline_measures_served_inprocess_and_eager_side_by_side(built, triton_server_factory, tmp_path):
    """perf.headline: the winner served, the same runtime in-process and eager fp32, one after another in each
    round against a real server; each ratio is the geometric mean of the rounds' own ratios (paired)."""
    import math

    from perf import headline, sweep
    from perf.harness import _headline_jobs, discover
    from perf.report import write_report

    server = triton_server_factory(built["repo"], model_control_mode="explicit", expected_models=[])
    target = discover(built["repo"], ["lin__onnx"])[0]
    opts = sweep.SweepOptions(server.urls.grpc, server.urls.http, True, None, "loadgen", ["grpc"], [2], 0.5, 200,
                              0.2, 2, 30.0, None, tmp_path, rounds=3, budget_ms=100.0, headline_window_s=0.5)
    run = {"steps": [], "notes": [], "commands": [], "models": {target.name: target.info()}, "meta": {}}
    sw = sweep._Sweep(run, built["spec"], opts, None, lambda s: None)
    jobs = _headline_jobs([target], built["spec_path"], [1, 2], 0.5)
    entry = headline.measure(sw, sw.prepare(target), "loadgen-grpc", 2,
                             {"inprocess": jobs[("inprocess", "lin__onnx")], "eager": jobs[("eager", "lin")]}, 3)
    assert [r["round"] for r in entry["rounds"]] == [1, 2, 3] and not entry["errors"], entry
    assert all(r[k] > 0 for r in entry["rounds"] for k in ("served", "inprocess", "eager")), entry
    # every baseline of a round timed at least MIN_CALLS calls, however short the window (session 15: eager fp32 at
    # batch 8 was 2 calls a round and read 3.41-4.22 img/s from one process to the next)
    assert all(r["calls"][k] >= headline.MIN_CALLS for r in entry["rounds"] for k in ("inprocess", "eager")), entry
    for name, side in (("x_eager", "eager"), ("served_over_inprocess", "inprocess")):
        got = entry[name]
        per_round = [r["served"] / r[side] for r in entry["rounds"]]
        assert got["pairs"] == 3
        assert got["value"] == pytest.approx(math.exp(sum(map(math.log, per_round)) / 3), rel=1e-9)
        assert got["ci"][0] <= got["value"] <= got["ci"][1]
    assert sw.client.ready_or_reason("lin__onnx")  # unloaded again (a reason why not READY): the next phase has the CPU
    # the report's winner takes its headline from these rounds, not from the sweep's unpaired baselines
    step = {"model": "lin__onnx", "driver": "loadgen-grpc", "concurrency": 2, "throughput": 100.0, "p99_ms": 5.0,
            "p50_ms": 2.0, "errors": 0, "rounds": 3, "throughput_rounds": [99.0, 100.0, 101.0],
            "throughput_ci": [97.0, 103.0]}
    run.update(steps=[step], latency_budget_ms=100.0, headline={"lin": entry},
               eager={"lin": {"rows": [{"concurrency": 2, "throughput": 1000.0, "throughput_rounds": [1e3, 1e3, 1e3],
                                        "throughput_ci": [1e3, 1e3]}]}})
    run["models"]["lin__onnx"]["gate"] = "passed"
    write_report(run, tmp_path / "report")
    res = json.loads((tmp_path / "report" / "results.json").read_text())
    assert res["winners"]["lin"]["headline"]["x_eager"]["value"] == pytest.approx(entry["x_eager"]["value"])
    md = (tmp_path / "report" / "report.md").read_text()
    assert "lin: the headline, side by side" in md and "3 rounds side by side, paired" in md
    # a winner at another concurrency than the confirmed one keeps the sweep's ratio
    assert headline.attach({"triton_name": "lin__onnx", "concurrency": 1, "speedup_vs_eager": 0.1}, entry) == \
        {"triton_name": "lin__onnx", "concurrency": 1, "speedup_vs_eager": 0.1}


def test_max_isa_caps_every_process_and_skips_the_runtime_no_cap_reaches(built, triton_install, tmp_path):
    """--max-isa avx2 (perf.isa): the probe, the baselines and the server run with the cap (ATen reports AVX2 in the
    eager baseline's own process, on an AVX-512 CPU too); ONNX Runtime's variants are skipped with the reason."""
    import os

    with pytest.raises(UserError, match="--max-isa sse: not one of avx2"):
        run_perf(None, built["repo"], built["spec_path"], None, [1], 100.0, tmp_path / "bad", max_isa="sse")
    run_dir = run_perf(None, built["repo"], built["spec_path"], None, [1], 1000.0, tmp_path / "results", "loadgen",
                       0.5, 100, warmup_s=0.2, rounds=1, op_profile=False, max_isa="avx2", install=triton_install,
                       log=lambda s: None)
    assert "ONEDNN_MAX_CPU_ISA" not in os.environ  # restored after the run
    res = json.loads((run_dir / "results.json").read_text())
    assert "MLAS" in res["models"]["lin__onnx"]["skipped"]
    assert {s["model"] for s in res["steps"]} == {"lin__torchscript"} and res["steps"][0]["throughput"] > 0
    assert res["eager"]["lin"]["cpu_capability"] == "AVX2"
    assert res["baselines"]["lin__torchscript"]["rows"][0]["throughput"] > 0
    probe = res["probe"]
    assert probe["isa_cap"] == "AVX2" and (tmp_path / "results" / "machine_probe-avx2.json").is_file()
    assert not [m for m in probe["methods"] if "ort" in m or m.startswith("bf16")], probe["methods"]
    assert probe["peak_gflops"]["fp32"] > 0
    # the work per inference still comes from the skipped variant's ONNX graph: shares of the capped ceiling
    assert res["flops"]["lin"]["flops_per_inference"] == 2 * 4 * 3
    assert res["meta"]["isa_cap"].startswith("avx2: ONEDNN_MAX_CPU_ISA=AVX2")
    assert "ONNX Runtime's MLAS" in (run_dir / "report.md").read_text()  # the skip and why, in the report
