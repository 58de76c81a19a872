"""Perf harness pieces that need no server: FLOP counter, perf_analyzer argv/CSV, stats deltas, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from generator.formats.perfanalyzer import parse_csv
from generator.spec import parse_spec
from perf import pa_driver, server_stats
from perf.probe import count_flops
from perf.report import choose_winners, enrich, write_report

DATA = Path(__file__).resolve().parent / "data"


# ------------------------------------------------------------------------------------------- FLOPs


def _graph(tmp_path: Path) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    w_conv = numpy_helper.from_array(rng.standard_normal((8, 3, 3, 3)).astype(np.float32), "w_conv")
    w_gemm = numpy_helper.from_array(rng.standard_normal((10, 8 * 16 * 16)).astype(np.float32), "w_gemm")
    w_mm = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "w_mm")
    nodes = [
        helper.make_node("Conv", ["x", "w_conv"], ["c"], pads=[1, 1, 1, 1], strides=[2, 2]),  # [B,8,16,16]
        helper.make_node("Flatten", ["c"], ["f"]),
        helper.make_node("Gemm", ["f", "w_gemm"], ["g"], transB=1),  # [B,10]
        helper.make_node("MatMul", ["g", "w_mm"], ["y"]),  # [B,4]
    ]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 32, 32])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])],
                          [w_conv, w_gemm, w_mm])
    p = tmp_path / "m.onnx"
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(p))
    return p


def test_flop_counter_counts_conv_gemm_and_matmul_at_a_concrete_batch(tmp_path):
    p = _graph(tmp_path)
    conv = 2 * (8 * 16 * 16) * (3 * 3 * 3)
    gemm = 2 * 10 * (8 * 16 * 16)
    mm = 2 * 4 * 10
    one = count_flops(p, {"x": [1, 3, 32, 32]})
    assert one["by_op"] == {"Conv": conv, "Gemm": gemm, "MatMul": mm}
    assert one["flops"] == conv + gemm + mm and one["uncounted"] == []
    assert count_flops(p, {"x": [3, 3, 32, 32]})["flops"] == 3 * one["flops"]


def test_flop_counter_on_a_torch_exported_linear_and_grouped_conv(tmp_path):
    import torch

    model = torch.nn.Sequential(torch.nn.Conv2d(4, 8, 3, padding=1, groups=2), torch.nn.Flatten(),
                                torch.nn.Linear(8 * 6 * 6, 5)).eval()
    p = tmp_path / "t.onnx"
    torch.onnx.export(model, (torch.randn(2, 4, 6, 6),), str(p), dynamo=True, input_names=["x"],
                      dynamic_shapes=({0: torch.export.Dim("batch", max=64)},), verbose=False)
    got = count_flops(p, {"x": [1, 4, 6, 6]})
    conv = 2 * (8 * 6 * 6) * (4 // 2 * 3 * 3)
    linear = 2 * 5 * (8 * 6 * 6)
    assert got["flops"] == conv + linear, got


# ------------------------------------------------------------------------------------------- perf_analyzer


def _text_spec(tmp_path):
    data = {"models": [{
        "name": "text", "source": {"factory": "m:f"},
        "inputs": [{"name": "ids", "dtype": "int64", "shape": ["seq"], "range": [0, 50]},
                   {"name": "mask", "dtype": "int64", "shape": ["seq"], "range": [1, 2]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}],
        "dims": {"seq": [1, 12, 32]}, "max_batch_size": 8, "variants": ["onnx"],
    }]}
    return parse_spec(data, tmp_path / "spec.yaml").models[0]


def test_perf_analyzer_argv_comes_from_the_spec(tmp_path):
    model = _text_spec(tmp_path)
    argv = pa_driver.build_argv("pa", "text__onnx", "127.0.0.1:1", model, 4, tmp_path / "o.csv", tmp_path / "d.json",
                                batch=1, measurement_ms=800)
    joined = " ".join(argv)
    assert "--shape ids:12" in joined and "--shape mask:12" in joined  # named dim at opt
    assert "--concurrency-range 4:4" in joined and "-b 1" in joined and "--measurement-interval 800" in joined
    assert argv[argv.index("--input-data") + 1] == str(tmp_path / "d.json")


def test_perf_analyzer_sends_whole_tensors_to_a_config_served_unbatched(tmp_path):
    """OpenVINO on 24.10 is served with max_batch_size 0 and dims [-1, ...] although the spec batches: no -b, a
    leading 1 on --shape (perf_analyzer refused [3,224,224] for [-1,3,224,224] before, found by `--driver both`)."""
    model = _text_spec(tmp_path)
    argv = pa_driver.build_argv("pa", "text__openvino", "127.0.0.1:1", model, 4, tmp_path / "o.csv", None,
                                batch=1, served_unbatched=True)
    joined = " ".join(argv)
    assert "-b" not in argv and "--shape ids:1,12" in joined and "--shape mask:1,12" in joined


def test_input_data_json_holds_spec_samples_without_the_batch_dim(tmp_path):
    from perf.loadgen import samples

    model = _text_spec(tmp_path)
    feeds = samples(model, n=3)
    assert feeds[0]["ids"].shape == (1, 12) and feeds[0]["ids"].dtype == np.int64
    assert feeds[0]["ids"].min() >= 0 and feeds[0]["ids"].max() < 50 and (feeds[0]["mask"] == 1).all()
    path = pa_driver.write_input_data(pa_driver.unbatched(feeds, model), tmp_path / "d.json")
    data = json.loads(path.read_text())["data"]
    assert len(data) == 3 and data[0]["ids"]["shape"] == [12]
    import base64

    raw = np.frombuffer(base64.b64decode(data[1]["ids"]["b64"]), np.int64)
    np.testing.assert_array_equal(raw, feeds[1]["ids"][0])


def test_captured_csv_becomes_steps_with_the_server_breakdown():
    rows = parse_csv(DATA / "perf_analyzer_sample.csv")
    steps = [pa_driver._row_to_step(r, "tiny_onnx", 1) for r in rows]
    assert [s.concurrency for s in steps] == [1, 2, 3, 4]
    s = steps[0]
    assert s.throughput == pytest.approx(350.475) and s.p99_ms == pytest.approx(3.173)
    br = s.server["perf_analyzer"]
    assert br == {"queue_ms": pytest.approx(2.12), "compute_input_ms": pytest.approx(0.016),
                  "compute_infer_ms": pytest.approx(0.347), "compute_output_ms": pytest.approx(0.126)}
    assert s.client["network_server_send_recv"] == pytest.approx(0.232)
    assert all(x.p50_ms <= x.p90_ms <= x.p95_ms <= x.p99_ms for x in steps)


def test_version_mismatch_warns_and_match_is_quiet():
    class PA:
        version = "2.51.0"

    assert pa_driver.version_check(PA, "2.51.0") is None
    assert "differ" in pa_driver.version_check(PA, "2.60.0")


# ------------------------------------------------------------------------------------------- server stats


def test_stats_delta_gives_per_request_times_and_the_batch_formed():
    def snap(success, infer_ns, queue_ns, inf, exe):
        return server_stats.from_json({"model_stats": [{
            "inference_count": str(inf), "execution_count": str(exe),
            "inference_stats": {"success": {"count": str(success), "ns": str(success * 5_000_000)},
                                "queue": {"count": str(success), "ns": str(queue_ns)},
                                "compute_infer": {"count": str(success), "ns": str(infer_ns)}}}]})

    d = server_stats.delta(snap(10, 10_000_000, 0, 10, 10), snap(110, 410_000_000, 100_000_000, 110, 35))
    assert d.requests == 100 and d.inference_count == 100 and d.execution_count == 25
    assert d.avg_batch == pytest.approx(4.0)
    assert d.compute_infer_ms == pytest.approx(4.0) and d.queue_ms == pytest.approx(1.0)
    assert d.compute_input_ms is None  # nothing recorded


# ------------------------------------------------------------------------------------------- report


def _step(name, c, tp, p99, errors=0, **server):
    return {"model": name, "driver": "loadgen-grpc", "concurrency": c, "batch": 1, "requests": 100, "errors": errors,
            "window_s": 1.0, "throughput": tp, "p50_ms": p99 / 2, "p90_ms": p99 * 0.8, "p95_ms": p99 * 0.9,
            "p99_ms": p99, "avg_ms": p99 / 2, "aborted": "", "error_samples": [],
            "server": {"queue_ms": 1.0, "compute_infer_ms": 3.0, "compute_input_ms": 0.1, "compute_output_ms": 0.1,
                       "avg_batch": c * 0.9, **server}}


def synthetic_run() -> dict:
    models = {
        "m__onnx": {"model": "m", "variant": "onnx", "gate": "passed", "precision": "fp32"},
        "m__onnx-int8": {"model": "m", "variant": "onnx-int8", "gate": "failed", "precision": "int8"},  # fastest, gate failed
        "m__torchscript": {"model": "m", "variant": "torchscript", "gate": "passed", "precision": "fp32"},
    }
    steps = [
        _step("m__onnx", 1, 100, 12), _step("m__onnx", 4, 300, 30), _step("m__onnx", 8, 420, 80),  # 8: over budget
        _step("m__onnx-int8", 1, 500, 5), _step("m__onnx-int8", 4, 1500, 8),
        _step("m__torchscript", 1, 90, 14), _step("m__torchscript", 4, 250, 35),
        _step("m__torchscript", 8, 350, 45, errors=3),  # within budget but had errors
    ]
    return {
        "run_id": "synthetic", "latency_budget_ms": 50.0, "steps": steps, "models": models,
        "baselines": {"m__onnx": {"rows": [{"concurrency": c, "throughput": t} for c, t in ((1, 120), (4, 320), (8, 440))]}},
        # three interleaved rounds per baseline: the median and its 95% interval (perf.stability.combine_rounds)
        "eager": {"m": {"rows": [{"concurrency": c, "throughput": t, "throughput_ci": [0.8 * t, 1.25 * t]}
                                 for c, t in ((1, 50), (4, 100), (8, 110))], "rounds": 3}},
        "flops": {"m": {"flops_per_inference": 1e9}},
        "probe": {"peak_gflops": {"fp32": 1000.0, "int8": 4000.0}},
        "commands": ["tritonserver --model-repository r", "perf_analyzer -m m__onnx"], "meta": {"spec": "s.yaml"},
    }


def test_winner_is_the_fastest_gate_passed_error_free_step_within_budget():
    rows = enrich(synthetic_run())
    w = choose_winners(rows, 50.0)["m"]["row"]
    assert (w["variant"], w["concurrency"]) == ("onnx", 4)
    assert w["speedup_vs_eager"] == pytest.approx(3.0) and w["serving_ratio"] == pytest.approx(300 / 320)
    assert w["achieved_gflops"] == pytest.approx(300.0) and w["peak_fraction"] == pytest.approx(0.3)
    assert choose_winners(rows, 100.0)["m"]["row"]["concurrency"] == 8  # a looser budget admits c=8
    assert choose_winners(rows, 1.0)["m"]["row"] is None


def test_a_variant_that_skips_dead_rows_is_credited_the_models_flops_and_shows_what_it_executed(tmp_path):
    """Throughput x the model's FLOPs is what a request is worth; a variant that prunes dead rows (manifest
    info.dead_rows) also reports the share of the ceiling it executes, which is lower."""
    run = synthetic_run()
    run["models"]["m__onnx"]["skipped_ops"] = int(0.1e9)  # 10% of the model's 1 GFLOP per inference
    w = choose_winners(enrich(run), 50.0)["m"]["row"]
    assert w["peak_fraction"] == pytest.approx(0.3) and w["executed_fraction"] == pytest.approx(0.27)
    write_report(run, tmp_path / "r")
    assert "executes 270.0 GFLOP/s, 27% of the ceiling" in (tmp_path / "r" / "report.md").read_text()
    assert enrich(synthetic_run())[0]["executed_fraction"] is None  # nothing skipped: no second figure


def test_report_files_plots_and_winner(tmp_path):
    out = write_report(synthetic_run(), tmp_path / "r")
    d = tmp_path / "r"
    for f in ("report.md", "report.html", "results.csv", "results.json", "commands.txt", "m_throughput.png", "m_latency.png"):
        assert (d / f).is_file() and (d / f).stat().st_size > 0, f
    for png in d.glob("*.png"):
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (d / "report.md").read_text()
    assert "`onnx` (Triton model `m__onnx`) at concurrency 4" in md
    assert "3.00x PyTorch eager fp32 at the same concurrency (95% interval 2.40-3.75x" in md
    assert "queueing in the server" in md  # the plain-words breakdown
    html = (d / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "src='m_" not in html  # self-contained
    assert out["winners"]["m"]["variant"] == "onnx"
    assert json.loads((d / "results.json").read_text())["winners"]["m"]["triton_name"] == "m__onnx"
    csv_lines = (d / "results.csv").read_text().splitlines()
    assert len(csv_lines) == 1 + 8 and csv_lines[0].startswith("model,variant,triton_name,driver,concurrency")
    assert (d / "commands.txt").read_text().splitlines()[0] == "tritonserver --model-repository r"


def test_cycle_throughput_has_no_window_edge_effect_on_bursty_responses():
    """4 closed-loop workers answered in bursts every 0.6 s (one batch of 4): 6.67 requests/s. A 1.5 s window
    [1.0, 2.5] holds 3 bursts (12 completions: 8/s counted, 20% high); the workers' cycles give the rate."""
    from perf import loadgen

    starts = [[i * 0.6 + 0.001 * k for i in range(10)] for k in range(4)]
    assert loadgen.cycle_throughput(starts, 1.0, 2.5) == pytest.approx(4 / 0.6, rel=1e-6)
    assert loadgen.cycle_throughput(starts, 1.3, 2.9) == pytest.approx(4 / 0.6, rel=1e-6)
    # a worker with a single send in the window: no whole cycle, no estimate
    assert loadgen.cycle_throughput([[0.0, 5.0], [0.5, 1.0]], 0.0, 2.0) is None


def test_headline_ratio_needs_an_interval_and_a_trustworthy_baseline(tmp_path):
    run = synthetic_run()
    run["eager"]["m"]["unreliable"] = "its rounds differ by 40% at concurrency 4 (more than 25%)"
    write_report(run, tmp_path / "a")
    md = (tmp_path / "a" / "report.md").read_text()
    assert "x PyTorch eager" not in md.split("## Best variant")[1].split("##")[0]
    assert "no ratio to PyTorch eager fp32: its baseline is not trustworthy (its rounds differ by 40%" in md
    run = synthetic_run()
    for r in run["eager"]["m"]["rows"]:
        del r["throughput_ci"]
    write_report(run, tmp_path / "b")
    assert "fewer than 2 rounds (no interval)" in (tmp_path / "b" / "report.md").read_text()


def test_openvino_in_process_baseline_is_one_stream_on_every_served_thread(tmp_path):
    """Served: 2 instances share one compiled model, a stream and a thread each (INFERENCE_NUM_THREADS 2,
    NUM_STREAMS 2). The in-process equivalent is one session on both threads: one stream of 2 (with the config's
    2 streams a single call runs on one thread; measured on the ViT INT8: 16.8/s vs 25/s at batch 1)."""
    from perf.baseline import served_settings

    (tmp_path / "1").mkdir()
    (tmp_path / "1" / "model.xml").write_text("<net/>")
    (tmp_path / "config.pbtxt").write_text(
        'name: "m"\nbackend: "openvino"\nmax_batch_size: 0\n'
        'input [ { name: "x" data_type: TYPE_FP32 dims: [ -1, 4 ] } ]\n'
        'output [ { name: "y" data_type: TYPE_FP32 dims: [ -1, 3 ] } ]\n'
        'instance_group [ { count: 2 kind: KIND_CPU } ]\n'
        'parameters { key: "INFERENCE_NUM_THREADS" value: { string_value: "2" } }\n'
        'parameters { key: "NUM_STREAMS" value: { string_value: "2" } }\n')
    got = served_settings("openvino", tmp_path / "1" / "model.xml", 1, {})
    assert (got["threads"], got["instances"]) == (2, 2)
    assert got["settings"]["INFERENCE_NUM_THREADS"] == "2" and got["settings"]["NUM_STREAMS"] == "1"
    # with no per-instance override the config's INFERENCE_NUM_THREADS is the model's total already (the backend
    # compiles once for all instances): 2 threads, not 2 x 2 on a 2-core machine (the op profile ran 4)
    got = served_settings("openvino", tmp_path / "1" / "model.xml", 0, {})
    assert (got["threads"], got["per_instance"]) == (2, 1)
    assert got["settings"]["INFERENCE_NUM_THREADS"] == "2" and got["settings"]["NUM_STREAMS"] == "1"


def test_served_over_inprocess_names_lost_batching_when_the_server_ran_requests_alone():
    """The OpenVINO ViT is served unbatched on 24.10 (batches of 1.00) while the in-process baseline runs c at once:
    its 0.77x is mostly batching the config cannot do (in-process 2 streams x 1 at a time: 42/s, the served 39-41/s),
    so the report must not call the whole gap serving overhead. A batching server keeps the plain wording."""
    from perf.report import explain

    row = {"concurrency": 4, "avg_ms": 101.3, "p99_ms": 113.8, "serving_ratio": 0.77, "serving_ratio_ci": [0.69, 0.88],
           "avg_batch": 1.0}
    text = explain(row)
    assert "ran each request alone (batches of 1.00)" in text and "serving overhead 23%" not in text
    assert "serving overhead 23%" in explain({**row, "avg_batch": 3.2})
    assert "serving overhead 23%" in explain({**row, "concurrency": 1})  # one request at a time on both sides
