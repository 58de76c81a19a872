"""tune's verdict and screen on synthetic rounds (a server would make these cases slow and unrepeatable):
an interval that excludes 1 is a difference; a winner below the spec's config wins only when the spec's broke
the budget, and says so; OpenVINO (which pads every batch to max_batch_size) is screened small too."""

from __future__ import annotations

import types
from dataclasses import asdict

import pytest

from generator.spec.tune import TuneSettings
from perf import confirm
from perf.tune import Candidate, Space, finals
from perf.tune.search import ModelTune, screen_candidates

SPEC = Candidate("m__onnx", 2, 8, (4, 8), 500, 1, label="spec")
OTHER = Candidate("m__onnx-int8", 1, 8, (4, 8), 500, 2)


def _entry(c: Candidate, tps, p99s, within) -> dict:
    return {"label": c.label, "short": c.short(), "candidate": asdict(c),
            "rounds": [{"concurrency": 4, "throughput": t, "p99_ms": p, "within": w, "error": ""}
                       for t, p, w in zip(tps, p99s, within)]}


def _verdict(spec_rounds, other_rounds, budget=20.0):
    res = ModelTune(model="m", settings={})
    res.confirm = {SPEC.key(): _entry(SPEC, *spec_rounds), OTHER.key(): _entry(OTHER, *other_rounds)}
    lu = finals.Lineup(spec=SPEC, primary=None, all=[SPEC, OTHER])
    finals.summarise(res, lu, "throughput")
    finals.choose(res, lu, "throughput", 3, TuneSettings(latency_budget_ms=budget))
    return res


def test_an_interval_below_one_is_called_worse_not_indistinguishable():
    # the spec's config broke the 20 ms budget in 2 of 3 rounds, so the slower one wins: and says why
    res = _verdict(([100, 102, 98], [22.3, 22.5, 19.0], [False, False, True]),
                   ([78, 80, 77], [15.0, 15.2, 14.9], [True, True, True]))
    assert res.winner["key"] == OTHER.key()
    assert "0.78x the spec's throughput: worse (95% interval" in res.verdict
    assert "not distinguishable" not in res.verdict
    assert ("it wins because the spec's config stayed within the constraints in 1 of 3 rounds "
            "(p99 22.3 ms over the 20 ms budget)") in res.verdict


def test_a_winner_below_the_spec_does_not_replace_a_spec_that_met_the_budget():
    # the other config has the higher mean (135 vs 133) but is below the spec round by round (0.95x)
    res = _verdict(([200, 100, 100], [10, 10, 10], [True] * 3), ([210, 60, 135], [9, 9, 9], [True] * 3))
    assert res.winner["key"] == SPEC.key()
    assert res.verdict.startswith("the spec's own configuration stays: the best other one (m__onnx-int8")


def test_a_difference_above_one_is_better():
    res = _verdict(([100, 101, 99], [10, 10, 10], [True] * 3), ([150, 152, 149], [9, 9, 9], [True] * 3))
    assert res.winner["key"] == OTHER.key() and ": better (95% interval" in res.verdict
    g, lo, hi = confirm.ratio_interval([1.5, 1.5049, 1.5051])
    assert confirm.verdict_word(lo, hi) == "better" and confirm.verdict_word(0.62, 0.99) == "worse"
    assert confirm.verdict_word(0.9, 1.1) == "not distinguishable"


def test_interval_uses_students_t():
    # two rounds: t(0.975, 1) = 12.706, not the normal 1.96
    g, lo, hi = confirm.ratio_interval([1.0, 2.0])
    import math
    half = 12.706 * (math.log(2) / math.sqrt(2)) / math.sqrt(2)
    assert lo == pytest.approx(math.exp(math.log(2) / 2 - half), rel=1e-3)


def test_openvino_is_screened_at_a_small_max_batch_size_as_well():
    space = Space("m__openvino", "openvino", instances=[1, 2], max_batch_size=[1, 2, 4, 8], queue_delay_us=[0, 500],
                  threads=[1, 2], cores=2)
    spec_c = Candidate("m__openvino", 2, 8, (4, 8), 500, 1, label="spec")
    ov = screen_candidates(types.SimpleNamespace(runtime="openvino"), space, spec_c)
    assert ov[0] == spec_c and [c.max_batch_size for c in ov] == [8, 1] and ov[1].instances == 2
    ort = screen_candidates(types.SimpleNamespace(runtime="onnxruntime"), space, spec_c)
    assert ort == [spec_c]
