"""Served steps in interleaved rounds (perf.sweep, perf.stability), the headline from them (perf.report) and
two runs compared (perf.compare_runs), on synthetic numbers: a noisy machine cannot be made on purpose."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy import stats

from perf import compare_runs, stability
from perf import sweep as sweep_mod
from perf.report import write_report


def _round(tp, p99=100.0, drift=1.0, c=1, model="m__onnx", driver="loadgen-grpc"):
    return {"model": model, "driver": driver, "concurrency": c, "batch": 1, "requests": 50, "errors": 0,
            "window_s": 2.0, "throughput": tp, "p50_ms": p99 / 2, "p90_ms": p99 * 0.8, "p95_ms": p99 * 0.9,
            "p99_ms": p99, "avg_ms": p99 / 2, "aborted": "", "drift": drift, "warmup": {"settled": True},
            "server": {"queue_ms": 1.0, "compute_infer_ms": 3.0, "avg_batch": c}}


# ------------------------------------------------------------------------------------------ statistics


def test_interval_and_paired_ratio_match_scipy():
    vals = [10.0, 10.6, 9.7, 10.2]
    med, lo, hi = stability.interval(vals)
    logs = np.log(vals)
    want = stats.t.interval(0.95, len(vals) - 1, loc=logs.mean(), scale=stats.sem(logs))
    assert med == pytest.approx(np.median(vals))
    assert (lo, hi) == pytest.approx(tuple(np.exp(want)), rel=1e-9)
    a, b = [12.0, 13.1, 11.5], [10.0, 10.4, 9.9]
    ratio, rlo, rhi = stability.paired_ratio(a, b)
    lr = np.log(np.array(a) / np.array(b))
    want = stats.t.interval(0.95, 2, loc=lr.mean(), scale=stats.sem(lr))
    assert ratio == pytest.approx(math.exp(lr.mean())) and (rlo, rhi) == pytest.approx(tuple(np.exp(want)))
    assert stability.paired_ratio([12.0], [10.0]) is None  # one pair: no interval
    assert stability.interval([5.0]) == (5.0, 0.0, float("inf"))


def test_unpaired_ratio_is_welchs_interval_on_logs_and_ignores_round_order():
    """A served step against a baseline measured in another phase: Welch's t interval on the logs (scipy's
    ttest_ind(equal_var=False) is the reference), the same whatever order either side's rounds are in."""
    a, b = [31.0, 33.5, 29.9, 32.2], [4.4, 4.6, 4.3]
    ratio, lo, hi = stability.unpaired_ratio(a, b)
    la, lb = np.log(a), np.log(b)
    assert ratio == pytest.approx(math.exp(la.mean() - lb.mean()))
    ci = stats.ttest_ind(la, lb, equal_var=False).confidence_interval(0.95)
    assert (lo, hi) == pytest.approx((math.exp(ci.low), math.exp(ci.high)), rel=1e-9)
    assert stability.unpaired_ratio(a[::-1], b[::-1]) == pytest.approx((ratio, lo, hi))
    # pairing rounds that were never measured together would give a different (pretend) interval
    assert stability.paired_ratio(a, b)[1:] != pytest.approx((lo, hi))
    assert stability.unpaired_ratio(a, [4.4]) is None and stability.unpaired_ratio([], b) is None


def test_rounds_combine_into_medians_of_throughput_and_percentiles_with_intervals():
    c = stability.combine_steps([_round(10.0, 100), _round(10.4, 120), _round(10.1, 90)])
    assert c["rounds"] == 3 and c["throughput"] == 10.1 and c["throughput_rounds"] == [10.0, 10.4, 10.1]
    assert c["p99_ms"] == 100 and c["p99_ms_rounds"] == [100, 120, 90]
    for k in ("throughput", "p50_ms", "p95_ms", "p99_ms"):
        lo, hi = c[f"{k}_ci"]
        assert lo < c[k] < hi
    assert c["requests"] == 150 and c["window_s"] == 6.0
    assert c["p90_ms"] == pytest.approx(0.8 * 100) and c["avg_ms"] == 50  # medians of every latency figure
    assert c["server"]["queue_ms"] == 1.0  # the median round stands for the server breakdown
    assert stability.step_unreliable(c) is None


def test_a_step_with_one_outlier_round_or_a_moving_probe_is_unreliable():
    outlier = stability.combine_steps([_round(10.0), _round(10.2), _round(6.0)])
    why = stability.step_unreliable(outlier)
    assert why and "95% interval of +-" in why and "10, 10.2, 6/s" in why
    assert outlier["half_width"] > stability.MAX_HALF_WIDTH
    moved = stability.combine_steps([_round(10.0), _round(10.1, drift=1.6), _round(10.05)])
    assert "probe moved 1.60x" in stability.step_unreliable(moved)
    assert "1 round(s): no interval" in stability.step_unreliable(stability.combine_steps([_round(10.0)]))


# ------------------------------------------------------------------------------------------ the sweep


class _Target:
    def __init__(self, name):
        self.name, self.model, self.skipped = name, "m", ""

    def info(self):
        return {"model": self.model, "skipped": self.skipped}


def _fake_sweep(monkeypatch, script, rounds=3, concurrency=(1, 4)):
    """perf.sweep with the server replaced: ``script[(name, c)]`` is the list of throughputs the step
    returns, one per time it is measured; the blocks' order is recorded."""
    order, calls = [], {}

    def prepare(self, t):
        p = sweep_mod._Prepared(t, None, ["y"], [], 1, None, ["loadgen-grpc"])
        p.keys = [(t.name, "loadgen-grpc", c) for c in concurrency]
        return p

    def measure(self, p, drv, c, r, attempt):
        n = calls.get((p.t.name, c), 0)
        calls[(p.t.name, c)] = n + 1
        return {**_round(script[(p.t.name, c)][n], c=c, model=p.t.name), "round": r + 1, "attempt": attempt}

    def block(self, p, r, attempt):
        order.append((attempt, r, p.t.name))
        return real_block(self, p, r, attempt)

    real_block = sweep_mod._Sweep.block
    monkeypatch.setattr(sweep_mod._Sweep, "prepare", prepare)
    monkeypatch.setattr(sweep_mod._Sweep, "measure", measure)
    monkeypatch.setattr(sweep_mod._Sweep, "block", block)
    monkeypatch.setattr(sweep_mod._Sweep, "load", lambda self, name: "")
    monkeypatch.setattr(sweep_mod._Sweep, "unload", lambda self, name: None)
    monkeypatch.setattr(stability, "quiet_check", lambda probe_s=0.3: {"load1": 0.1, "probe_ms": 1.0, "cores": 2})
    opts = sweep_mod.SweepOptions("127.0.0.1:1", None, True, None, "loadgen", ["grpc"], list(concurrency), 6.0, 100,
                                  1.0, 4, 5.0, None, None, rounds=rounds)
    run = {"steps": [], "models": {}, "notes": [], "commands": [], "meta": {}}
    sweep_mod.sweep(run, [_Target("a__onnx"), _Target("b__openvino")], None, opts, log=lambda s: None)
    return run, order, calls


def test_rounds_rotate_the_variants_and_an_outlier_step_is_re_measured_once(monkeypatch):
    calm = [10.0, 10.2, 10.1]
    script = {("a__onnx", 1): calm, ("a__onnx", 4): [20.0, 20.3, 20.1],
              ("b__openvino", 1): [12.0, 12.1, 11.9],
              # one outlier round, then three calm ones in the re-measurement
              ("b__openvino", 4): [25.0, 14.0, 25.2, 25.1, 24.9, 25.0]}
    run, order, calls = _fake_sweep(monkeypatch, script)
    assert [x for x in order if x[0] == 1] == [(1, 0, "a__onnx"), (1, 0, "b__openvino"), (1, 1, "b__openvino"),
                                              (1, 1, "a__onnx"), (1, 2, "a__onnx"), (1, 2, "b__openvino")]
    assert [x for x in order if x[0] == 2] == [(2, r, "b__openvino") for r in range(3)]  # only the flagged variant
    assert calls[("b__openvino", 4)] == 6 and calls[("b__openvino", 1)] == 3 and calls[("a__onnx", 4)] == 3
    steps = {(s["model"], s["concurrency"]): s for s in run["steps"]}
    re = steps[("b__openvino", 4)]
    assert re["remeasured"] and "95% interval" in re["first_attempt"]["why"]
    assert re["throughput_rounds"] == [25.1, 24.9, 25.0] and not re.get("unreliable")
    assert re["first_attempt"]["throughput_rounds"] == [25.0, 14.0, 25.2]
    assert re["window_s"] == pytest.approx(3 * 2.0)  # the second attempt replaced the first
    assert not any(s.get("unreliable") for s in run["steps"])
    assert run["meta"]["rounds"].startswith("3 interleaved round(s)") and "2 s window" in run["meta"]["rounds"]
    assert len(run["round_steps"]) == 4 * 3 + 3


def test_a_step_still_spread_after_its_re_measurement_is_marked_unreliable(monkeypatch):
    script = {("a__onnx", 1): [10.0, 10.1, 10.0], ("b__openvino", 1): [12.0, 6.0, 12.1, 12.0, 5.0, 12.2]}
    run, order, _ = _fake_sweep(monkeypatch, script, concurrency=(1,))
    bad = next(s for s in run["steps"] if s["model"] == "b__openvino")
    assert bad["remeasured"] and "95% interval" in bad["unreliable"]
    assert "1 of 2 served step(s) are unreliable after one re-measurement" in " ".join(run["notes"])
    assert len([x for x in order if x[0] == 2]) == 3  # re-measured once, not again


def test_the_round_window_is_a_share_of_the_measurement_with_a_floor():
    o = sweep_mod.SweepOptions("u", None, True, None, "loadgen", ["grpc"], [1], 9.0, 100, 1.0, 4, 5.0, None, None)
    assert o.window_s() == 3.0
    o.measurement_s = 3.0
    assert o.window_s() == sweep_mod.MIN_ROUND_WINDOW_S
    o.measurement_s = 0.5  # a test's tiny window is kept whole
    assert o.window_s() == 0.5


# ------------------------------------------------------------------------------------------ report + compare


def _run(scale=1.0, b_int8=None, eager_unreliable=None, jitter=(1.0, 1.03, 0.98), jitter_int8=None):
    """A results record of two variants in 3 rounds, baselines in 3 rounds."""
    steps = []
    for name, base, jit in (("m__onnx", 100.0, jitter), ("m__onnx-int8", b_int8 or 60.0, jitter_int8 or jitter)):
        for c, gain in ((1, 1.0), (4, 2.5)):
            steps.append(stability.combine_steps([_round(base * gain * scale * j, p99=20 * c, c=c, model=name)
                                                  for j in jit]))
    for s in steps:
        if why := stability.step_unreliable(s):
            s["unreliable"] = why
    eager = {"rows": [{"concurrency": c, "throughput": t, "throughput_rounds": [t, t * 1.02, t * 0.99],
                       "throughput_ci": [t * 0.97, t * 1.03]} for c, t in ((1, 40.0), (4, 50.0))], "rounds": 3}
    if eager_unreliable:
        eager["unreliable"] = eager_unreliable
    inproc = {"rows": [{"concurrency": c, "throughput": t, "throughput_rounds": [t, t * 0.99, t * 1.01],
                        "throughput_ci": [t * 0.98, t * 1.02]} for c, t in ((1, 110.0), (4, 270.0))], "rounds": 3}
    return {"run_id": "r", "latency_budget_ms": 100.0, "steps": steps, "baselines": {"m__onnx": inproc},
            "eager": {"m": eager}, "notes": [], "commands": [], "meta": {},
            "models": {"m__onnx": {"model": "m", "variant": "onnx", "gate": "passed", "precision": "fp32"},
                       "m__onnx-int8": {"model": "m", "variant": "onnx-int8", "gate": "passed", "precision": "int8"}}}


def test_headline_from_round_medians_with_paired_intervals(tmp_path):
    write_report(_run(), tmp_path / "a")
    md = (tmp_path / "a" / "report.md").read_text()
    best = md.split("## Best variant")[1].split("\n## ")[0]
    assert "`onnx` (Triton model `m__onnx`) at concurrency 4: 250.00 inferences/s (95% interval" in best
    ratio = 250.0 / 50.0
    assert f"{ratio:.2f}x PyTorch eager fp32 at the same concurrency (95% interval" in best
    assert "from both sides' rounds, unpaired" in best and "served / in-process 0.93x (95% interval" in best
    assert "Runner-up: onnx-int8 at concurrency 4" in best and "distinguishably faster" in best
    res = json.loads((tmp_path / "a" / "results.json").read_text())
    h = res["winners"]["m"]["headline"]
    assert h["x_eager"]["ci"][0] < h["x_eager"]["value"] < h["x_eager"]["ci"][1]
    assert "| infer/s 95% |" in md and "| rounds | reliable |" in md


def test_no_winner_or_headline_from_an_unreliable_step_or_a_disturbed_baseline(tmp_path):
    run = _run(eager_unreliable="the fixed probe moved 1.40x during the phase")
    write_report(run, tmp_path / "e")
    best = (tmp_path / "e" / "report.md").read_text().split("## Best variant")[1].split("\n## ")[0]
    assert "x PyTorch eager" not in best and "no ratio to PyTorch eager fp32: its baseline is not trustworthy" in best
    assert "served / in-process 0.93x" in best  # the in-process baseline itself is fine

    run = _run(b_int8=140.0)  # int8 fastest, but one of its steps spread: no best variant over it
    int8 = next(s for s in run["steps"] if s["model"] == "m__onnx-int8" and s["concurrency"] == 4)
    int8["unreliable"] = "its 3 rounds give a 95% interval of +-40% of the median"
    write_report(run, tmp_path / "f")
    md = (tmp_path / "f" / "report.md").read_text()
    assert "no winner: the fastest step within p99 <= 100 ms, onnx-int8 at concurrency 4 (350.00/s median), is " \
           "unreliable" in md and "the fastest reliable one, onnx at concurrency 4 (250.00/s), cannot be named" in md

    run = _run(jitter=(1.0, 1.4, 0.7))  # every step's rounds far apart
    write_report(run, tmp_path / "u")
    md = (tmp_path / "u" / "report.md").read_text()
    assert "no winner: every step within p99 <= 100 ms is unreliable" in md
    assert "Unreliable steps" in md and "onnx loadgen-grpc c=4: its 3 rounds" in md
    assert json.loads((tmp_path / "u" / "results.json").read_text())["winners"]["m"]["triton_name"] is None


def _write(tmp_path, name, run):
    write_report(run, tmp_path / name)
    return str(tmp_path / name)


def test_compare_runs_agree(tmp_path, capsys):
    a = _write(tmp_path, "a", _run())
    b = _write(tmp_path, "b", _run(scale=1.01, jitter=(1.0, 0.97, 1.02)))
    assert compare_runs.main([a, b]) == 0
    out = capsys.readouterr().out
    assert out.strip().splitlines()[-1].startswith("agree:")
    assert "m__onnx  " in out and "@c=4" in out and "yes" in out
    assert "m: best variant A m__onnx, B m__onnx: same" in out
    assert "x PyTorch eager: A 5.00x" in out and "B within A's interval: yes, A within B's: yes" in out


def test_compare_runs_disagree_on_the_best_variant_and_the_intervals(tmp_path, capsys):
    a = _write(tmp_path, "a", _run())
    b = _write(tmp_path, "b", _run(b_int8=140.0))  # int8 became the fastest
    assert compare_runs.main([a, b]) == 1
    out = capsys.readouterr().out
    last = out.strip().splitlines()[-1]
    assert last.startswith("disagree: m__onnx-int8: the throughput intervals at c=4 do not overlap") and "more)" in last
    assert "DIFFERENT" in out and "NO" in out
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b))
    assert any("the best variant differs (A m__onnx, B m__onnx-int8)" in p for p in res["problems"])
    # the same variants, but the eager baseline of run B is disturbed: its headline is not printed
    c = _write(tmp_path, "c", _run(eager_unreliable="its rounds differ by 40% at concurrency 4"))
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(c))
    assert res["problems"] == ["m x PyTorch eager: run B prints no headline ratio (its baseline is not trustworthy "
                               "(its rounds differ by 40% at concurrency 4))"]
    assert compare_runs.main([a, str(tmp_path / "nowhere")]) == 2
    assert "no results.json there" in capsys.readouterr().err


def test_compare_runs_compares_a_variant_at_the_same_concurrency_and_skips_an_unreliable_pair(tmp_path, capsys):
    # the VNNI pair of issue 22: onnx-int8's best step was c=1 in run A (its c=4 step unreliable) and c=4 in
    # run B. 9.6/s at c=1 against 21.7/s at c=4 is no disagreement between the runs; c=1 against c=1 is the
    # comparison, and c=4 cannot be compared while A's step there is unreliable
    run_a, run_b = _run(), _run(scale=1.01, jitter=(1.0, 0.97, 1.02))
    int8_a = {s["concurrency"]: s for s in run_a["steps"] if s["model"] == "m__onnx-int8"}
    int8_a[4]["unreliable"] = "its 3 rounds give a 95% interval of +-27% of the median"
    a, b = _write(tmp_path, "a", run_a), _write(tmp_path, "b", run_b)
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b))
    v = next(x for x in res["variants"] if x["triton_name"] == "m__onnx-int8")
    assert (v["a"]["concurrency"], v["b"]["concurrency"]) == (1, 4)
    assert [(p["concurrency"], p["why"], p["overlap"]) for p in v["pairs"]] == [
        (1, None, True), (4, "unreliable in run A", None)]
    assert res["problems"] == [] and res["notes"] == ["m__onnx-int8 at c=4: not comparable (unreliable in run A)"]
    assert compare_runs.main([a, b]) == 0
    out = capsys.readouterr().out
    assert "c=4: not comparable (unreliable in run A)" in out and "(1 step pair(s) not comparable" in out
    # the same pair with run B's c=1 step 30% slower: the same-concurrency comparison catches it
    for s in run_b["steps"]:
        if s["model"] == "m__onnx-int8" and s["concurrency"] == 1:
            s["throughput"] *= 0.7
            s["throughput_ci"] = [x * 0.7 for x in s["throughput_ci"]]
    b = _write(tmp_path, "b2", run_b)
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b))
    assert any(p.startswith("m__onnx-int8: the throughput intervals at c=1 do not overlap") for p in res["problems"])


def test_compare_runs_calls_a_tie_both_runs_measured_a_tie(tmp_path, capsys):
    # onnx and int8 within 2% of each other, their rounds crossing: run A names onnx, run B int8, and in both the
    # other is the runner-up whose paired interval includes 1 -- a tie, not a disagreement
    other = (1.02, 0.97, 1.0)
    a = _write(tmp_path, "a", _run(b_int8=99.0, jitter_int8=other))
    b = _write(tmp_path, "b", _run(b_int8=101.0, jitter_int8=other))
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b))
    m = res["models"][0]
    assert (m["best_a"], m["best_b"], m["same"], m["tied"]) == ("m__onnx", "m__onnx-int8", False, True)
    assert not any("best variant differs" in p for p in res["problems"]), res["problems"]
    compare_runs.main([a, b])
    assert "B m__onnx-int8: tied (in both runs the other's best is the runner-up" in capsys.readouterr().out
    # a runner-up distinguishably slower in one run is no tie
    c = _write(tmp_path, "c", _run(b_int8=90.0))
    res = compare_runs.compare(compare_runs.load(c), compare_runs.load(b))
    assert not res["models"][0]["tied"] and any("best variant differs" in p for p in res["problems"])


def test_the_fastest_variant_is_named_when_only_its_own_faster_step_is_unreliable(tmp_path):
    # run A of the VNNI pair: openvino-int8's c=4 step spread +-27% while its c=8 step was reliable and faster than
    # every other variant's: the variant is the best either way, its reliable step stands for it
    run = _run(b_int8=140.0)
    int8 = {s["concurrency"]: s for s in run["steps"] if s["model"] == "m__onnx-int8"}
    int8[1]["throughput"], int8[4]["unreliable"] = 300.0, "its 3 rounds give a 95% interval of +-27% of the median"
    write_report(run, tmp_path / "s")
    res = json.loads((tmp_path / "s" / "results.json").read_text())
    assert res["winners"]["m"]["triton_name"] == "m__onnx-int8" and res["winners"]["m"]["concurrency"] == 1
    md = (tmp_path / "s" / "report.md").read_text()
    assert "its step at concurrency 4 measured 350.00/s (median) but is unreliable" in md
    # the same run with the reliable int8 step slower than onnx's best: onnx cannot be named over int8's
    int8[1]["throughput"] = 200.0
    write_report(run, tmp_path / "t")
    assert json.loads((tmp_path / "t" / "results.json").read_text())["winners"]["m"]["triton_name"] is None


def _fake_baselines(monkeypatch, eager_rounds):
    """run_baselines with the measurements replaced (a real baseline run takes minutes and a noisy machine cannot
    be made on purpose): the eager job answers ``eager_rounds`` in turn, the in-process job steady numbers."""
    from perf import baseline as baseline_mod
    from perf import harness

    jobs = ({"m": {"kind": "eager", "model": "m"}}, {"m__onnx": {"kind": "onnxruntime", "model": "m", "threads": 2}})
    monkeypatch.setattr(harness, "baseline_jobs", lambda *a, **k: jobs)
    monkeypatch.setattr(baseline_mod, "command_line", lambda job: f"baseline {job['kind']}")
    monkeypatch.setattr(stability, "quiet_check", lambda probe_s=0.3: {"load1": 0.1, "probe_ms": 1.0, "cores": 2})
    eager = iter(eager_rounds)
    calls = []

    def run_baseline(job):
        calls.append(job["kind"])
        tp = next(eager) if job["kind"] == "eager" else 100.0
        return {"kind": job["kind"], "rows": [{"concurrency": 1, "batch": 1, "throughput": tp},
                                               {"concurrency": 8, "batch": 8, "throughput": tp * 1.1}]}

    monkeypatch.setattr(baseline_mod, "run_baseline", run_baseline)
    run = {"commands": [], "notes": [], "baselines": {}, "eager": {}}
    harness.run_baselines(run, [], None, [1, 8], 1.0, 3, lambda msg: None)
    return run, calls


def test_a_spread_baseline_is_re_measured_once_and_kept_when_it_settles(monkeypatch):
    run, calls = _fake_baselines(monkeypatch, [4.0, 3.0, 4.1, 4.0, 4.05, 3.95])
    eager = run["eager"]["m"]
    assert calls.count("eager") == 6 and calls.count("onnxruntime") == 3  # only the spread job again
    assert eager["remeasured"] and "unreliable" not in eager and eager["rows"][0]["throughput"] == pytest.approx(4.0)
    assert "differ by" in eager["first_attempt"]["unreliable"] and eager["first_attempt"]["rounds"] == 3
    assert any("was re-measured" in n and "reliable now" in n for n in run["notes"])
    assert not run["baselines"]["m__onnx"].get("remeasured") and "baselines_again" in run["quiet"]

    run, calls = _fake_baselines(monkeypatch, [4.0, 3.0, 4.1, 4.0, 2.9, 4.1])  # still spread: marked
    assert calls.count("eager") == 6 and "differ by" in run["eager"]["m"]["unreliable"]
    assert any("still doubtful" in n for n in run["notes"])


def _quiet(*probe_ms):
    return {"sweep": {"before": {"load1": 1.0, "probe_ms": probe_ms[0], "cores": 2},
                      "after": {"load1": 1.0, "probe_ms": probe_ms[1], "cores": 2}}}


def _faster_machine(run, k):
    """The baselines of a run on a machine k times faster (its served steps: ``_run(scale=k)``)."""
    for base in (run["eager"]["m"], run["baselines"]["m__onnx"]):
        for r in base["rows"]:
            r["throughput"] *= k
            r["throughput_rounds"] = [x * k for x in r["throughput_rounds"]]
            r["throughput_ci"] = [x * k for x in r["throughput_ci"]]
    return run


def test_compare_runs_scales_by_the_machines_own_drift_only_when_the_probe_measured_it(tmp_path, capsys):
    # the AMX pair (2026-12-05): every variant ~11% faster in run B, and the fixed probe before and after the sweep
    # ran 1.11x faster in B too (A 0.1148/0.1083 ms, B 0.1025/0.0988 ms): the machine's drift, not the variants'
    run_a = {**_run(jitter=(1.0, 1.01, 0.99)), "quiet": _quiet(0.1148, 0.1083)}
    run_b = {**_faster_machine(_run(scale=1.12, jitter=(1.0, 1.01, 0.99)), 1.12), "quiet": _quiet(0.1025, 0.0988)}
    a, b = _write(tmp_path, "a", run_a), _write(tmp_path, "b", run_b)
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b))
    assert res["drift"]["separated"] and res["drift"]["factor"] == pytest.approx(1.108, abs=0.001)
    assert res["problems"] == [], res["problems"]
    assert any("overlap once run B is scaled to run A's machine speed" in n and "1.11x faster in run B" in n
               for n in res["notes"])
    assert compare_runs.main([a, b]) == 0
    out = capsys.readouterr().out
    assert "overlap after the machine's drift" in out and "machine: the fixed probe ran 1.11x faster in run B" in out
    # the memory probe's reads beside it are shown on the machine line and change no verdict (session 16: recorded,
    # not yet used; perf.stability.memory_probe_ms)
    mem = {"sweep": {k: {**v, "memory_ms": m} for (k, v), m in zip(run_b["quiet"]["sweep"].items(), (6.0, 6.2))}}
    b5 = _write(tmp_path, "b5", {**run_b, "quiet": mem})
    qa = {"sweep": {k: {**v, "memory_ms": m} for (k, v), m in zip(run_a["quiet"]["sweep"].items(), (6.6, 6.8))}}
    a5 = _write(tmp_path, "a5", {**run_a, "quiet": qa})
    res5 = compare_runs.compare(compare_runs.load(a5), compare_runs.load(b5))
    assert res5["problems"] == [] and res5["drift"]["factor"] == pytest.approx(res["drift"]["factor"])
    assert compare_runs.main([a5, b5]) == 0
    assert "the memory probe (a 64 MiB copy) ran 1.10x faster in run B: A 6.60, 6.80 ms, B 6.00, 6.20 ms (shown, not " \
           "used)" in capsys.readouterr().out
    # probe reads that interleave are the probe's own noise: no scaling, the runs disagree
    b2 = _write(tmp_path, "b2", {**run_b, "quiet": _quiet(0.1100, 0.1050)})
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b2))
    assert not res["drift"]["separated"] and any("do not overlap" in p for p in res["problems"])
    # no probe reads (an older results.json): as before
    b3 = _write(tmp_path, "b3", _run(scale=1.12, jitter=(1.0, 1.01, 0.99)))
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b3))
    assert res["drift"] is None and any("do not overlap" in p for p in res["problems"])
    # a variant that moved far more than the machine did still disagrees, and says so
    b4 = _write(tmp_path, "b4", {**_run(scale=1.5, jitter=(1.0, 1.01, 0.99)), "quiet": _quiet(0.1025, 0.0988)})
    res = compare_runs.compare(compare_runs.load(a), compare_runs.load(b4))
    assert any("not even scaled by the machine's drift" in p for p in res["problems"]), res["problems"]
