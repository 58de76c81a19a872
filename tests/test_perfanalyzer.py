"""generator.formats.perfanalyzer.parse_csv on a real perf_analyzer CSV (tests/data/README.md says how it was made)."""

from __future__ import annotations

from pathlib import Path

import pytest

from generator.formats.perfanalyzer import parse_csv

DATA = Path(__file__).resolve().parent / "data"


def test_reads_the_captured_sample_typed_with_ms_twins():
    rows = parse_csv(DATA / "perf_analyzer_sample.csv")
    assert [r["concurrency"] for r in rows] == [1, 2, 3, 4]
    first = rows[0]
    assert first["throughput_infer_per_sec"] == pytest.approx(350.475)
    assert first["server_queue_us"] == 2120.0 and first["server_queue_ms"] == pytest.approx(2.12)
    assert first["p99_latency_us"] == 3173.0 and first["p99_latency_ms"] == pytest.approx(3.173)
    assert first["avg_latency_us"] == 3 + 232 + 2120 + 16 + 347 + 126 + 1  # sum of the components
    for r in rows:
        assert isinstance(r["concurrency"], int) and isinstance(r["throughput_infer_per_sec"], float)
        assert r["p50_latency_us"] <= r["p90_latency_us"] <= r["p95_latency_us"] <= r["p99_latency_us"]
        assert r["server_compute_infer_ms"] == pytest.approx(r["server_compute_infer_us"] / 1000.0)
    assert [r["throughput_infer_per_sec"] for r in rows] == sorted(r["throughput_infer_per_sec"] for r in rows)


def test_request_rate_verbose_and_gpu_columns(tmp_path):
    csv = tmp_path / "rate.csv"
    csv.write_text(
        "Request Rate,Inferences/Second,Client Send,Server Queue,p99 latency,Avg latency,"
        "Avg GPU Utilization\n"
        "100,99.5,3,10,900,450,GPU-abc:0.5;\n"
    )
    (row,) = parse_csv(csv)
    assert row["request_rate"] == 100.0 and row["throughput_infer_per_sec"] == 99.5
    assert row["avg_latency_us"] == 450.0 and row["avg_latency_ms"] == 0.45
    assert row["avg_gpu_utilization"] == "GPU-abc:0.5;"


def test_empty_file_has_no_rows(tmp_path):
    (tmp_path / "e.csv").write_text("")
    assert parse_csv(tmp_path / "e.csv") == []
