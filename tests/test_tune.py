"""`tritongen tune`: candidate configs stay loadable and valid, the search runs through a real server, a
killed run resumes from its cache, and --apply writes the winner through the validator, idempotently."""

from __future__ import annotations

import dataclasses
import json

import pytest
from specs import linear_model, write_spec

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import load_spec
from generator.config.validate import check_model_dir, parse_config
from perf import tune
from perf.harness import discover


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """lin__onnx and lin__torchscript in an embedded repository (2 instances x 1 thread, batching)."""
    d = tmp_path_factory.mktemp("tune")
    spec_path = write_spec(d, {"models": [linear_model(
        variants=["onnx", "torchscript"], max_batch_size=8,
        triton={"dynamic_batching": {"preferred_batch_size": [4, 8], "max_queue_delay_microseconds": 100},
                "instance_group": [{"count": 2, "kind": "KIND_CPU"}], "intra_op_threads": 1},
        tune={"max_batch_size": [2, 8], "queue_delay_us": [0, 1000], "threads": [1]})]})
    spec = load_spec(spec_path)
    report = build(spec, d / "repo", d / "build", target="embedded")
    assert [r.status for r in report.results] == ["built", "built"]
    native = build(spec, d / "native", d / "build", target="triton")
    assert all(r.written for r in native.results)
    return {"dir": d, "spec_path": spec_path, "spec": spec, "repo": d / "repo", "native": d / "native"}


def _target(built, name="lin__onnx"):
    t = next(t for t in discover(built["repo"]) if t.name == name)
    t.dir = built["repo"] / name
    return t


def test_every_candidate_of_the_grid_is_a_valid_loadable_config(built):
    t = _target(built)
    base = tune._base_config(t)
    settings = tune.parse_tune({"max_batch_size": [1, 2, 4, 8]}, "tune")
    space = tune.build_space(t, base, built["spec"].model("lin"), settings, cores=2)
    grid = space.grid()
    assert grid and all((c.instances or 1) * (c.threads or 1) <= 2 for c in grid)
    assert {c.max_batch_size for c in grid} == {1, 2, 4, 8}
    for c in grid:
        cfg = tune.apply_candidate(base, c)
        assert tune.check_candidate(cfg, t.name) == [], c.short()
        # warm-up and preferred sizes followed max_batch_size
        assert all(w.batch_size <= c.max_batch_size for w in cfg.model_warmup)
        assert all(p <= c.max_batch_size for p in cfg.dynamic_batching.preferred_batch_size)
        assert cfg.instance_group[0].count == c.instances
        assert cfg.parameters["intra_op_threads"].string_value == str(c.threads)


def test_max_batch_size_never_exceeds_what_the_build_verified(built):
    t = _target(built)
    base = tune._base_config(t)
    space = tune.build_space(t, base, built["spec"].model("lin"), tune.TuneSettings(), cores=4)
    assert max(space.max_batch_size) == 8
    with pytest.raises(UserError, match=r"tune.max_batch_size: every value exceeds the verified max_batch_size 8"):
        tune.build_space(t, base, built["spec"].model("lin"), tune.parse_tune({"max_batch_size": [16]}, "tune"), 4)


def test_spec_and_default_candidates_read_back_the_built_config(built):
    t = _target(built)
    base = tune._base_config(t)
    spec_c = tune.spec_candidate(t, base)
    assert (spec_c.instances, spec_c.max_batch_size, spec_c.preferred, spec_c.queue_delay_us, spec_c.threads) == \
        (2, 8, (4, 8), 100, 1)
    default = tune.apply_candidate(base, tune.default_candidate(t, base))
    assert not default.HasField("dynamic_batching") and not default.instance_group
    assert "intra_op_threads" not in default.parameters


def test_neighbours_move_max_batch_size_up_to_two_steps_and_stay_within_the_cores():
    space = tune.Space("m", "python", instances=[1, 2], max_batch_size=[1, 2, 4, 8, 16], queue_delay_us=[0, 500, 2000],
                       threads=[1, 2], cores=2)
    c = tune.Candidate("m", 2, 16, (8, 16), 500, 1)
    ns = space.neighbours(c)
    assert sorted(n.max_batch_size for n in ns if n.max_batch_size != 16) == [4, 8]
    assert all(n.preferred == tune.preferred_for(n.max_batch_size) for n in ns)
    assert sorted(n.queue_delay_us for n in ns if n.queue_delay_us != 500) == [0, 2000]
    # one instance fewer: at 1 thread, and trading the freed core for a thread (2 x 1 -> 1 x 2)
    assert sorted((n.instances, n.threads) for n in ns if n.instances != 2) == [(1, 1), (1, 2)]
    assert all((n.instances or 1) * (n.threads or 1) <= 2 for n in ns)  # 2 instances x 2 threads is not offered
    back = {(n.instances, n.threads) for n in space.neighbours(tune.Candidate("m", 1, 16, (8, 16), 500, 2))}
    assert (2, 1) in back and (2, 2) not in back


def test_bad_tune_section_names_the_field(built, tmp_path):
    bad = write_spec(tmp_path, {"models": [linear_model(tune={"instances": [0]})]})
    with pytest.raises(UserError, match=r"models\[0\]\.tune\.instances\[0\]: must be >= 1"):
        load_spec(bad)
    bad = write_spec(tmp_path, {"models": [linear_model(tune={"objective": "fast"})]})
    with pytest.raises(UserError, match=r"models\[0\]\.tune\.objective: 'fast' is not one of throughput, latency"):
        load_spec(bad)


def test_ratio_interval_says_when_a_gain_is_noise():
    g, lo, hi = tune.ratio_interval([1.5, 1.45, 1.55])
    assert lo > 1.0 and g == pytest.approx(1.5, rel=0.02)
    g, lo, hi = tune.ratio_interval([1.3, 0.8, 1.1])
    assert lo < 1.0 < hi


@pytest.mark.server
def test_tune_through_the_real_server_resumes_and_applies(built, triton_install, tmp_path):
    out = tmp_path / "run"
    kw = dict(repo=built["repo"], strategy="quick", latency_budget_ms=5000.0, max_configs=4, window_s=0.4,
              rounds=2, finalists=1, cores=2, out=out, install=triton_install, log=lambda s: None)
    run_dir = tune.run_tune(built["spec_path"], **kw)
    res = json.loads((run_dir / "results.json").read_text())
    mt = res["models"][0]
    measured = [m for m in mt["measured"] if not m["error"]]
    # every variant got an in-process ceiling; one pruned on it never reached the server screen
    both = {"lin__onnx", "lin__torchscript"}
    assert set(mt["ceilings"]) == both and all(v > 0 for v in mt["ceilings"].values())
    screened = {s["variant"] for s in mt["screened"]}
    assert screened | set(mt["pruned"]) == both and screened
    for name in both - screened:
        assert mt["ceilings"][name] < 0.5 * max(mt["ceilings"].values())
    # the A/B rounds ran on aliases loaded side by side (no reload between rounds); the alias folder is gone
    assert "loading: tune0__" in (out / "tritonserver.log").read_text()
    assert not (out / "ab-aliases").exists()
    assert measured and all(r["requests"] > 0 and r["errors"] == 0 for m in measured for r in m["levels"])
    for m in measured:  # the score is a throughput the server really delivered within the budget
        best = next(r for r in m["levels"] if r["concurrency"] == m["best_level"])
        assert m["score"] == pytest.approx(best["throughput"]) and best["p99_ms"] <= 5000.0
        assert best["throughput"] == pytest.approx(best["requests"] / best["window_s"], rel=0.05)
    assert mt["winner"] is not None and len(mt["winner"]["rounds"]) == 2
    roles = {e["label"] for e in mt["confirm"].values()}
    assert {"spec", "triton-default"} <= roles
    assert (run_dir / "report.md").is_file() and (run_dir / "lin_pareto.png").is_file()
    assert "models" in (run_dir / "tuned.yaml").read_text()
    first = res["measured"]
    assert first > 0

    # a second run with the same folder measures nothing new in the search
    again = json.loads((tune.run_tune(built["spec_path"], **kw) / "results.json").read_text())
    # the ceilings too come from the folder (re-measured they can flip the pruning on a machine where the two
    # variants' ceilings lie near the prune ratio: seen on an AVX-512 VNNI CPU)
    assert again["models"][0]["ceilings"] == mt["ceilings"] and again["models"][0]["pruned"] == mt["pruned"]
    assert again["measured"] == 0 and again["reused"] >= first

    # --apply: the winner lands in both repositories through the validator; a second apply changes nothing
    win = tune.Candidate(**mt["winner"]["candidate"])
    win = dataclasses.replace(win, instances=1, queue_delay_us=win.queue_delay_us if win.max_batch_size else None)
    for repo in (built["repo"], built["native"]):
        assert tune.apply_to_repository(repo, win, log=lambda s: None) == "written"
        assert tune.apply_to_repository(repo, win, log=lambda s: None) == "unchanged"
        rep = check_model_dir(repo / win.variant)
        assert rep.ok, rep.problems
        assert rep.config.instance_group[0].count == 1 and rep.config.max_batch_size == win.max_batch_size
    native_cfg, _ = parse_config((built["native"] / win.variant / "config.pbtxt").read_text(), "x")
    key = {"onnxruntime_onnx": "intra_op_thread_count", "pytorch_libtorch": "INTRA_OP_THREAD_COUNT"}[native_cfg.platform]
    if win.threads:  # the native backend's own thread parameter, not the twin's
        assert native_cfg.parameters[key].string_value == str(win.threads)


def test_rate_objective_scores_the_highest_rate_held_and_stops_at_the_first_not_held():
    from perf.tune.measure import _stop_climbing

    s = tune.TuneSettings(objective="rate", latency_budget_ms=50.0)
    m = tune.Measurement(key="k", candidate={}, levels=[
        {"concurrency": r, "request_rate": r, "throughput": tp, "p99_ms": p, "requests": 10, "errors": 0, "held": h}
        for r, tp, p, h in ((4, 4.0, 5.0, True), (8, 8.0, 9.0, True), (16, 12.0, 80.0, False))])
    tune.score_rows(m, s)
    assert m.score == 8.0 and m.best_level == 8
    assert _stop_climbing(m.levels, s) and not _stop_climbing(m.levels[:2], s)
    assert tune.Bench.rate_levels(None, start=3, top=24) == [3, 6, 12, 24]


@pytest.mark.server
def test_tune_can_score_by_the_request_rate_held(built, triton_install, tmp_path):
    run_dir = tune.run_tune(built["spec_path"], repo=built["repo"], models=["lin"], strategy="brute",
                            objective="rate", latency_budget_ms=5000.0, max_configs=1, window_s=0.5, warmup_s=0.2,
                            rounds=2, finalists=1, cores=2, out=tmp_path / "rate", install=triton_install,
                            log=lambda s: None)
    mt = json.loads((run_dir / "results.json").read_text())["models"][0]
    rated = [m for m in mt["measured"] if not m["error"] and m["score"] > 0]
    assert rated, mt["verdict"]
    for m in rated:  # the score is the highest rate the server held: every rate up to it was held
        held = [r for r in m["levels"] if r["held"]]
        assert m["score"] == max(r["request_rate"] for r in held) and m["levels"][0]["request_rate"] == 4
        assert all(r["errors"] == 0 and r["p99_ms"] <= 5000.0 for r in held)
    with pytest.raises(UserError, match=r"tune.objective: rate needs a p99 budget"):
        tune.run_tune(built["spec_path"], repo=built["repo"], objective="rate", out=tmp_path / "x",
                      install=triton_install, log=lambda s: None)


@pytest.mark.parametrize("flag,kw", [("--latency-budget-ms -5", {"latency_budget_ms": -5.0}),
                                     ("--min-throughput 0", {"min_throughput": 0.0}),
                                     ("--max-memory-mb -1", {"max_memory_mb": -1.0})])
def test_cli_limits_must_be_positive(flag, kw):
    """The CLI's values replace the spec's tune section without its typed checks: checked here, one line."""
    from perf.tune.driver import _check_options

    with pytest.raises(UserError) as e:
        _check_options("quick", None, 1, 10, 2, {"latency_budget_ms": None, **kw})
    assert str(e.value) == f"{flag}: give a positive number"
    _check_options("quick", None, 1, 10, 2, {"latency_budget_ms": 50.0, "min_throughput": None})
