"""tune-vs-ma's table and report on synthetic results (Model Analyzer itself is a benchmark, not a test)."""

from __future__ import annotations

import types

import pytest

from perf import tune_vs_ma


def _rounds(*scores):
    return {"rounds": [{"score": s, "best_level": 4, "p99_ms": 10.0, "error": ""} for s in scores],
            "mean": sum(scores) / len(scores), "p99_median_ms": 10.0}


def test_report_rows_ratios_and_a_stopped_model_analyzer_in_one_line(tmp_path):
    a = types.SimpleNamespace(model="cnn", latency_budget_ms=20.0, rounds=3, ma_mode="quick", window_s=2.0)
    remeasured = {"spec": _rounds(100, 100, 100), "tritongen tune": _rounds(150, 151, 149),
                  "Model Analyzer": _rounds(120, 119, 121)}
    ma = {"configs_measured": 3, "wall_s": 720.0, "best": {"throughput": 125.0, "config": "cnn_config_2"},
          "log": "ma.log", "returncode": "stalled",
          "stopped": "Model Analyzer 1.58.0 made no progress for 120 s (...): stopped it and the 1 process(es) it "
                     "started (pids 1, 2) after 720 s"}
    mt = {"winner": {"throughput_mean": 150.0, "short": "cnn__onnx inst=1"}}
    rows, keys = tune_vs_ma.tool_rows(a, {"measured": 5, "reused": 0}, mt, ma, remeasured, 300.0, "cnn__onnx", None)
    by = {r["tool"]: r for r in rows}
    assert by["tritongen tune"]["vs_spec"][0] == pytest.approx(1.5, rel=0.01)
    assert by["tritongen tune"]["vs_spec"][1] > 1.0  # an interval above 1: better
    summary = {"variant_given_to_ma": "cnn__onnx", "verdict": "v", "rows": rows, "levels": [1, 2, 4],
               "remeasured": remeasured, "ma": ma, "load_average_start": (0.5, 0.5, 0.5)}
    md = tune_vs_ma.write_report(tmp_path, a, summary, keys).read_text()
    assert "| tritongen tune | 5 | 300 | 150.0 | 150.0 | 3/3 |" in md
    assert "**Model Analyzer 1.58.0 made no progress for 120 s" in md and "return code" not in md
