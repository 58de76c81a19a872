"""The embedded target end to end against a real tritonserver (no mocks): every model READY,
gRPC and HTTP answers equal PyTorch at batch 1 and max_batch_size, the ensemble turns real PNG
bytes into PyTorch's logits, concurrent requests are batched, bad requests get Triton's error and
the server keeps serving."""

from __future__ import annotations

import asyncio
import io
import subprocess
import sys
import threading

import numpy as np
import pytest
import torch

from generator.errors import UserError
from generator.build.pipeline import build
from generator.loading.preprocess import preprocess_image
from generator.spec import load_spec
from specs import ROOT, text_model, vit_model, write_spec

pytestmark = [pytest.mark.server, pytest.mark.slow]
sys.path.insert(0, str(ROOT))
from examples.client import GrpcClient, HttpClient, image_feed  # noqa: E402


@pytest.fixture(scope="module")
def served(tmp_path_factory, triton_install):
    from generator.serve.server import TritonServer

    work = tmp_path_factory.mktemp("e2e")
    vit = vit_model(variants=["onnx", "torchscript"], preprocess={"image": {"size": [32, 32]}},
                    triton={"dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": 20000},
                            "instance_group": [{"count": 1, "kind": "KIND_CPU"}], "intra_op_threads": 1})
    text = text_model(variants=["onnx"])
    spec = load_spec(write_spec(work, {"models": [vit, text]}))
    repo = work / "embedded"
    report = build(spec, repo, work / "build", target="embedded")
    assert all(r.status == "built" for r in report.results)
    server = TritonServer(repo, install=triton_install, log_path=work / "tritonserver.log")
    server.start()
    try:
        yield server, repo
    finally:
        server.stop()


def _vit_ref(x: np.ndarray) -> np.ndarray:
    from examples.vit import vit_tiny

    with torch.inference_mode():
        return vit_tiny()(torch.from_numpy(x)).numpy()


def test_every_model_is_ready(served):
    server, repo = served
    index = {m["name"]: m.get("state") for m in server.repository_index()}
    expected = {p.name for p in repo.iterdir() if p.is_dir()}
    assert expected == {"vit__onnx", "vit__torchscript", "vit__preprocess", "vit__ensemble", "text__onnx"}
    assert all(index.get(n) == "READY" for n in expected), index


@pytest.mark.parametrize("model", ["vit__onnx", "vit__torchscript"])
@pytest.mark.parametrize("batch", [1, 4])
def test_grpc_and_http_equal_pytorch(served, model, batch):
    server, _ = served
    x = np.random.default_rng(batch).standard_normal((batch, 3, 32, 32)).astype(np.float32)
    ref = _vit_ref(x)

    async def grpc():
        async with GrpcClient(server.urls.grpc) as c:
            return await c.infer(model, {"pixel_values": x})

    np.testing.assert_allclose(asyncio.run(grpc())["logits"], ref, atol=1e-4, rtol=1e-3)
    http = HttpClient(server.urls.http)
    try:
        np.testing.assert_allclose(http.infer(model, {"pixel_values": x})["logits"], ref, atol=1e-4, rtol=1e-3)
    finally:
        http.close()


def test_client_splits_batches_larger_than_max_batch_size(served):
    server, _ = served
    x = np.random.default_rng(9).standard_normal((10, 3, 32, 32)).astype(np.float32)

    async def go():
        async with GrpcClient(server.urls.grpc) as c:
            return await c.infer("vit__onnx", {"pixel_values": x})

    np.testing.assert_allclose(asyncio.run(go())["logits"], _vit_ref(x), atol=1e-4, rtol=1e-3)


def test_text_model_with_named_dims(served):
    server, _ = served
    from tinymodels.tiny import text_model as make

    for seq in (1, 5, 16):
        ids = np.random.default_rng(seq).integers(0, 50, (2, seq)).astype(np.int64)
        mask = np.ones_like(ids)
        with torch.inference_mode():
            pooled, tok = make()(torch.from_numpy(ids), torch.from_numpy(mask))

        async def go():
            async with GrpcClient(server.urls.grpc) as c:
                return await c.infer("text__onnx", {"input_ids": ids, "attention_mask": mask})

        out = asyncio.run(go())
        np.testing.assert_allclose(out["pooled"], pooled.numpy(), atol=1e-4, rtol=1e-3)
        np.testing.assert_allclose(out["token_logits"], tok.numpy(), atol=1e-4, rtol=1e-3)


def _png(seed: int, size=(40, 48)) -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def test_ensemble_turns_image_bytes_into_pytorch_logits(served):
    server, _ = served
    images = [_png(1), _png(2, (64, 20)), _png(3)]
    x = np.stack([preprocess_image(b, size=(32, 32)) for b in images])
    ref = _vit_ref(x)

    async def go():
        async with GrpcClient(server.urls.grpc) as c:
            return await c.classify_images("vit__ensemble", images)

    np.testing.assert_allclose(asyncio.run(go())["logits"], ref, atol=1e-4, rtol=1e-3)
    http = HttpClient(server.urls.http)
    try:
        out = http.infer("vit__ensemble", {"image": image_feed(images)})
    finally:
        http.close()
    np.testing.assert_allclose(out["logits"], ref, atol=1e-4, rtol=1e-3)


def test_concurrent_requests_are_batched_and_correct(served):
    import tritonclient.grpc as grpcclient

    server, _ = served
    client = grpcclient.InferenceServerClient(server.urls.grpc)
    before = client.get_inference_statistics("vit__onnx").model_stats[0]
    xs = [np.random.default_rng(100 + i).standard_normal((1, 3, 32, 32)).astype(np.float32) for i in range(24)]
    refs = [_vit_ref(x) for x in xs]
    errors = []

    def worker(k):
        c = grpcclient.InferenceServerClient(server.urls.grpc)
        for i in range(k, len(xs), 8):
            inp = grpcclient.InferInput("pixel_values", [1, 3, 32, 32], "FP32")
            inp.set_data_from_numpy(xs[i])
            out = c.infer("vit__onnx", [inp]).as_numpy("logits")
            if not np.allclose(out, refs[i], atol=1e-4, rtol=1e-3):
                errors.append(i)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    after = client.get_inference_statistics("vit__onnx").model_stats[0]
    assert not errors
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == 24
    assert executions < inferences, f"no batching: {executions} executions for {inferences} inferences"


def test_bad_requests_get_errors_and_server_keeps_serving(served):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server, _ = served
    c = grpcclient.InferenceServerClient(server.urls.grpc)

    def call(name, shape, dtype, arr):
        inp = grpcclient.InferInput(name, shape, dtype)
        inp.set_data_from_numpy(arr)
        return c.infer("vit__onnx", [inp])

    with pytest.raises(InferenceServerException):  # wrong shape
        call("pixel_values", [1, 3, 16, 16], "FP32", np.zeros((1, 3, 16, 16), np.float32))
    with pytest.raises(InferenceServerException):  # wrong dtype
        call("pixel_values", [1, 3, 32, 32], "INT64", np.zeros((1, 3, 32, 32), np.int64))
    with pytest.raises(InferenceServerException):  # missing input (wrong name)
        call("pixels", [1, 3, 32, 32], "FP32", np.zeros((1, 3, 32, 32), np.float32))
    x = np.ones((1, 3, 32, 32), np.float32)
    np.testing.assert_allclose(call("pixel_values", [1, 3, 32, 32], "FP32", x).as_numpy("logits"), _vit_ref(x),
                               atol=1e-4, rtol=1e-3)


def test_missing_tritonserver_is_a_one_line_error(tmp_path, triton_install):
    from dataclasses import replace

    from generator.serve.server import TritonServer

    (tmp_path / "repo").mkdir()
    broken = replace(triton_install, binary=tmp_path / "nope" / "tritonserver")
    with pytest.raises(UserError, match="tritonserver not found at"):
        TritonServer(tmp_path / "repo", install=broken).start()


def test_serve_refuses_a_native_repository(tmp_path):
    d = tmp_path / "repo" / "m__onnx"
    (d / "1").mkdir(parents=True)
    (d / "config.pbtxt").write_text('name: "m__onnx"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 0\n')
    r = subprocess.run([sys.executable, "-m", "generator.cli", "serve", str(tmp_path / "repo")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and "--target embedded" in r.stderr and "Traceback" not in r.stderr


def test_cli_serve_and_stop(tmp_path, served):
    _, repo = served
    pid = tmp_path / "server.json"
    r = subprocess.run([sys.executable, "-m", "generator.cli", "serve", str(repo), "--pidfile", str(pid)],
                       capture_output=True, text=True, timeout=180)
    try:
        assert r.returncode == 0, r.stderr
        assert "gRPC    127.0.0.1:" in r.stdout and "READY  vit__ensemble" in r.stdout
    finally:
        s = subprocess.run([sys.executable, "-m", "generator.cli", "stop", "--pidfile", str(pid)],
                           capture_output=True, text=True, timeout=60)
    assert s.returncode == 0 and "stopped" in s.stdout
    assert not pid.exists()


def test_server_log_has_no_tracebacks_from_runners(served):
    """Runners hand outputs over by DLPack; a mishandled capsule prints a traceback per response."""
    server, _ = served
    assert "Traceback" not in server.log_text()
