"""The one runtime layer (generator/serve/runtimes.py): sessions configured from a config's native-backend parameters
apply them (read back from the runtime's own session/compiled-model properties) and compute what PyTorch does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from generator.serve import runtimes as rt


@pytest.fixture(scope="module")
def lin(tmp_path_factory):
    import onnx
    import openvino as ov

    d = tmp_path_factory.mktemp("rt")
    torch.manual_seed(0)
    m = torch.nn.Linear(4, 3).eval()
    raw = d / "raw.onnx"
    torch.onnx.export(m, (torch.randn(2, 4),), str(raw), input_names=["x"], output_names=["y"],
                      dynamic_axes={"x": {0: "batch"}, "y": {0: "batch"}}, dynamo=False)
    onnx.save(onnx.load(str(raw)), str(d / "model.onnx"))
    static = ov.convert_model(str(d / "model.onnx"))
    static.reshape({"x": [2, 4]})
    ov.save_model(static, str(d / "static.xml"), compress_to_fp16=False)
    torch.jit.save(torch.jit.trace(m, (torch.randn(2, 4),)), str(d / "model.pt"))
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    with torch.no_grad():
        ref = m(torch.from_numpy(x)).numpy()
    return d, x, ref


def test_onnxruntime_session_applies_the_backend_parameters(lin):
    d, x, ref = lin
    params = {"intra_op_thread_count": "1", "inter_op_thread_count": "1", "execution_mode": "1", "enable_mem_arena": "0",
              "runtime": "onnxruntime", "artifact": "model.onnx"}
    s = rt.open_session("onnxruntime", d / "model.onnx", ["x"], ["y"], rt.settings_from_parameters("onnxruntime", params, -1))
    so = s.options
    import onnxruntime as ort

    assert so.intra_op_num_threads == 1 and so.inter_op_num_threads == 1
    assert so.execution_mode == ort.ExecutionMode.ORT_PARALLEL
    assert so.enable_cpu_mem_arena is False
    assert so.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_BASIC  # level -1, as the backend maps it
    np.testing.assert_allclose(s([x])[0], ref, rtol=1e-5, atol=1e-5)
    assert "execution_mode=parallel" in s.summary()


def test_openvino_session_applies_streams_hint_and_reshape(lin):
    d, x, ref = lin
    params = {"NUM_STREAMS": "1", "PERFORMANCE_HINT": "THROUGHPUT", "INFERENCE_NUM_THREADS": "1", "RESHAPE_IO_LAYERS": "YES"}
    s = rt.open_session("openvino", d / "static.xml", ["x"], ["y"], rt.settings_from_parameters("openvino", params),
                        input_dims={"x": [-1, 4]})
    assert int(s.compiled.get_property("NUM_STREAMS")) == 1
    assert str(s.compiled.get_property("PERFORMANCE_HINT")).upper().endswith("THROUGHPUT")
    assert int(s.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    np.testing.assert_allclose(s([x])[0], ref, rtol=1e-4, atol=1e-4)  # batch 5 on an IR saved at batch 2: reshaped


def test_openvino_twin_instances_take_their_share_of_the_models_threads_unpinned(lin):
    """The native backend runs 2 instances as 2 infer requests on one compiled model (2 threads, 2 streams); the
    twin's process per instance gets 1 thread and 1 stream each, unpinned: pinned, both processes' threads sit on
    the same core (measured: 8.6 + 8.6 img/s pinned vs 18.0 + 17.9 unpinned on 2 cores, the example ViT INT8)."""
    d, x, ref = lin
    params = {"NUM_STREAMS": "2", "INFERENCE_NUM_THREADS": "2", "RESHAPE_IO_LAYERS": "YES", "instances": "2"}
    s = rt.open_session("openvino", d / "static.xml", ["x"], ["y"], rt.settings_from_parameters("openvino", params),
                        input_dims={"x": [-1, 4]})
    assert int(s.compiled.get_property("NUM_STREAMS")) == 1
    assert int(s.compiled.get_property("INFERENCE_NUM_THREADS")) == 1
    assert s.compiled.get_property("ENABLE_CPU_PINNING") is False
    assert "2 sharing one compiled model" in s.summary()
    np.testing.assert_allclose(s([x])[0], ref, rtol=1e-4, atol=1e-4)
    alone = rt.open_session("openvino", d / "static.xml", ["x"], ["y"],
                            rt.settings_from_parameters("openvino", {**params, "instances": "1"}), input_dims={"x": [-1, 4]})
    assert int(alone.compiled.get_property("INFERENCE_NUM_THREADS")) == 2 and "sharing" not in alone.summary()


def test_openvino_session_runs_every_batch_at_max_batch_size_like_the_backend(lin):
    d, x, ref = lin
    dims = {"x": [-1, 4]}
    padded = rt.open_session("openvino", d / "model.onnx", ["x"], ["y"],
                             rt.settings_from_parameters("openvino", {"ENABLE_BATCH_PADDING": "YES"}), input_dims=dims,
                             max_batch_size=8)
    out = padded([x])[0]  # batch 5, zero-padded to 8 and sliced back
    assert out.shape == (5, 3)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    assert "every run at max_batch_size 8, zero-padded" in padded.summary()
    strict = rt.open_session("openvino", d / "model.onnx", ["x"], ["y"], rt.settings_from_parameters("openvino", {}),
                             input_dims=dims, max_batch_size=8)
    with pytest.raises(ValueError, match="expected requests with batch size '8', got '5'"):
        strict([x])


def test_torchscript_session_applies_threads_and_inference_mode(lin):
    d, x, ref = lin
    before = torch.get_num_threads()
    try:
        s = rt.open_session("torchscript", d / "model.pt", ["x"], ["y"],
                            rt.settings_from_parameters("torchscript", {"INTRA_OP_THREAD_COUNT": "1", "INFERENCE_MODE": "false"}))
        assert torch.get_num_threads() == 1
        assert s.inference_mode is False and s.reproduced["INFERENCE_MODE"] == "false"
        np.testing.assert_allclose(s([x])[0], ref, rtol=1e-5, atol=1e-5)
    finally:
        torch.set_num_threads(before)


def test_legacy_runner_keys_still_configure_sessions():
    s = rt.settings_from_parameters("onnxruntime", {"intra_op_threads": "2", "ort_graph_optimization_level": "extended"})
    assert s == {"intra_op_thread_count": "2", "graph_level": "extended"}
    assert rt.settings_from_parameters("openvino", {"openvino_inference_precision": "bf16"})["inference_precision"] == "bf16"
    assert rt.settings_from_parameters("openvino", {"HINT_BF16": "YES"})["inference_precision"] == "bf16"
    assert rt.with_threads("openvino", {}, 4) == {"INFERENCE_NUM_THREADS": "4"}
