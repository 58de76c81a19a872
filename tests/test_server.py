"""A real tritonserver (python backend) serving the runner and preprocess models; no mocks.

One module-scoped server holds four models built here: the runner on ONNX Runtime (dynamic batching),
TorchScript and OpenVINO, and the image preprocess model. Every served answer is compared with PyTorch
(or with ``generator.loading.preprocess.preprocess_image``).
"""

from __future__ import annotations

import io
import json
import shutil
import socket
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from generator.errors import UserError
from generator.loading.preprocess import preprocess_image
from generator.serve.server import TritonServer, read_pidfile, serve_background, stop_from_pidfile

pytestmark = pytest.mark.server

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "templates" / "runner" / "model.py"
PREPROCESS = ROOT / "templates" / "preprocess" / "model.py"
IN, OUT = 16, 8


# ------------------------------------------------------------------------------------------- models


def tiny_torch_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(IN, 32), torch.nn.ReLU(), torch.nn.Linear(32, OUT)).eval()


def export_onnx(model: torch.nn.Module, out: Path) -> Path:
    import onnx

    tmp = out.parent / "export" / "model.onnx"
    tmp.parent.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model, (torch.randn(2, IN),), str(tmp), dynamo=True, input_names=["x"], output_names=["y"],
        dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},), verbose=False,
    )
    onnx.save(onnx.load(str(tmp)), str(out))  # weights inline: Triton wants one model.onnx
    shutil.rmtree(tmp.parent)
    return out


def runner_config(name: str, runtime: str, artifact: str, max_batch_size: int = 8, extra: str = "") -> str:
    return f"""
name: "{name}"
backend: "python"
max_batch_size: {max_batch_size}
input [ {{ name: "x" data_type: TYPE_FP32 dims: [ {IN} ] }} ]
output [ {{ name: "y" data_type: TYPE_FP32 dims: [ {OUT} ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
dynamic_batching {{ max_queue_delay_microseconds: 2000 }}
parameters {{ key: "runtime" value: {{ string_value: "{runtime}" }} }}
parameters {{ key: "artifact" value: {{ string_value: "{artifact}" }} }}
parameters {{ key: "intra_op_threads" value: {{ string_value: "1" }} }}
{extra}
"""


def add_model(repo: Path, name: str, config: str, files: dict[str, Path | bytes], model_py: Path = RUNNER) -> Path:
    version = repo / name / "1"
    version.mkdir(parents=True)
    (repo / name / "config.pbtxt").write_text(config)
    shutil.copy(model_py, version / "model.py")
    for fname, src in files.items():
        if isinstance(src, bytes):
            (version / fname).write_bytes(src)
        else:
            shutil.copy(src, version / fname)
    return version


PRE_SIZE = (24, 32)  # height, width
PREPROCESS_CONFIG = f"""
name: "preprocess"
backend: "python"
max_batch_size: 4
input [ {{ name: "image" data_type: TYPE_UINT8 dims: [ -1 ] }} ]
output [ {{ name: "pixel_values" data_type: TYPE_FP32 dims: [ 3, {PRE_SIZE[0]}, {PRE_SIZE[1]} ] }} ]
instance_group [ {{ count: 1 kind: KIND_CPU }} ]
parameters {{ key: "size" value: {{ string_value: "{PRE_SIZE[0]},{PRE_SIZE[1]}" }} }}
parameters {{ key: "mean" value: {{ string_value: "0.485,0.456,0.406" }} }}
parameters {{ key: "std" value: {{ string_value: "0.229,0.224,0.225" }} }}
parameters {{ key: "layout" value: {{ string_value: "NCHW" }} }}
parameters {{ key: "resize" value: {{ string_value: "bilinear" }} }}
parameters {{ key: "output_name" value: {{ string_value: "pixel_values" }} }}
"""


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    d = tmp_path_factory.mktemp("artifacts")
    model = tiny_torch_model()
    onnx_path = export_onnx(model, d / "model.onnx")
    ts_path = d / "model.pt"
    torch.jit.trace(model, torch.randn(2, IN)).save(str(ts_path))
    import openvino as ov

    # save_model compresses weights to fp16 by default (error ~1e-4): keep fp32.
    ov.save_model(ov.convert_model(str(onnx_path)), str(d / "model.xml"), compress_to_fp16=False)
    return {"torch": model, "onnx": onnx_path, "ts": ts_path, "xml": d / "model.xml", "bin": d / "model.bin"}


@pytest.fixture(scope="module")
def served(artifacts, triton_install, tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    add_model(repo, "tiny_onnx", runner_config("tiny_onnx", "onnxruntime", "model.onnx"), {"model.onnx": artifacts["onnx"]})
    add_model(repo, "tiny_ts", runner_config("tiny_ts", "torchscript", "model.pt"), {"model.pt": artifacts["ts"]})
    add_model(
        # like Triton's openvino backend, the twin runs every batch at max_batch_size: padding must be on
        repo, "tiny_ov", runner_config("tiny_ov", "openvino", "model.xml",
                                       extra='parameters { key: "ENABLE_BATCH_PADDING" value: { string_value: "YES" } }'),
        {"model.xml": artifacts["xml"], "model.bin": artifacts["bin"]},
    )
    add_model(repo, "preprocess", PREPROCESS_CONFIG, {}, model_py=PREPROCESS)
    server = TritonServer(repo, install=triton_install, log_path=repo.parent / "tritonserver.log")
    try:
        server.start()
        yield server
    finally:
        server.stop()


def expected(model: torch.nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(x)).numpy()


def grpc_infer(url: str, model: str, x: np.ndarray, client=None) -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = client or grpcclient.InferenceServerClient(url)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp]).as_numpy("y")


def http_infer(url: str, model: str, x: np.ndarray) -> np.ndarray:
    import tritonclient.http as httpclient

    client = httpclient.InferenceServerClient(url)
    inp = httpclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=True)
    try:
        return client.infer(model, [inp]).as_numpy("y")
    finally:
        client.close()


# -------------------------------------------------------------------------------------------- tests


def test_every_model_is_ready_and_server_listens_on_loopback_only(served):
    index = {m["name"]: m["state"] for m in served.repository_index()}
    assert index == {"tiny_onnx": "READY", "tiny_ts": "READY", "tiny_ov": "READY", "preprocess": "READY"}
    assert served.urls.http.startswith("127.0.0.1:") and served.urls.grpc.startswith("127.0.0.1:")
    assert served.urls.metrics.startswith("http://127.0.0.1:")
    cmd = served.command
    for flag in ("--http-address", "--grpc-address", "--metrics-address"):
        assert cmd[cmd.index(flag) + 1] == "127.0.0.1"
    assert served.ready_time_s is not None and served.ready_time_s < 120
    assert served.log_path.is_file()


@pytest.mark.parametrize("model", ["tiny_onnx", "tiny_ts", "tiny_ov"])
@pytest.mark.parametrize("batch", [1, 4])
def test_grpc_and_http_equal_torch(served, artifacts, model, batch):
    x = np.random.default_rng(batch).standard_normal((batch, IN), dtype=np.float32)
    want = expected(artifacts["torch"], x)
    for got in (grpc_infer(served.urls.grpc, model, x), http_infer(served.urls.http, model, x)):
        assert got.shape == (batch, OUT) and got.dtype == np.float32
        np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)


def test_concurrent_requests_are_batched_and_all_correct(served, artifacts):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(served.urls.grpc)
    before = client.get_inference_statistics("tiny_onnx").model_stats[0]
    rng = np.random.default_rng(7)
    inputs = [rng.standard_normal((1, IN), dtype=np.float32) for _ in range(8 * 25)]
    barrier = threading.Barrier(8)

    def worker(k):
        own = grpcclient.InferenceServerClient(served.urls.grpc)
        barrier.wait()
        return [(i, grpc_infer(served.urls.grpc, "tiny_onnx", inputs[i], own)) for i in range(k, len(inputs), 8)]

    with ThreadPoolExecutor(8) as pool:
        results = [r for part in pool.map(worker, range(8)) for r in part]
    assert len(results) == len(inputs)
    for i, got in results:
        np.testing.assert_allclose(got, expected(artifacts["torch"], inputs[i]), atol=1e-5, rtol=0)

    after = client.get_inference_statistics("tiny_onnx").model_stats[0]
    inferences = after.inference_count - before.inference_count
    executions = after.execution_count - before.execution_count
    assert inferences == len(inputs)
    assert executions < inferences, f"no batches formed: {executions} executions for {inferences} inferences"


def test_bad_requests_get_errors_and_the_server_keeps_serving(served, artifacts):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    client = grpcclient.InferenceServerClient(served.urls.grpc)
    wrong_shape = grpcclient.InferInput("x", [1, IN + 1], "FP32")
    wrong_shape.set_data_from_numpy(np.zeros((1, IN + 1), np.float32))
    wrong_dtype = grpcclient.InferInput("x", [1, IN], "INT64")
    wrong_dtype.set_data_from_numpy(np.zeros((1, IN), np.int64))
    too_big = grpcclient.InferInput("x", [9, IN], "FP32")  # over max_batch_size 8
    too_big.set_data_from_numpy(np.zeros((9, IN), np.float32))
    wrong_name = grpcclient.InferInput("not_x", [1, IN], "FP32")
    wrong_name.set_data_from_numpy(np.zeros((1, IN), np.float32))
    for bad in ([wrong_shape], [wrong_dtype], [too_big], [wrong_name], []):
        with pytest.raises(InferenceServerException):
            client.infer("tiny_onnx", bad)
    assert client.is_server_live() and client.is_model_ready("tiny_onnx")
    x = np.ones((2, IN), np.float32)
    np.testing.assert_allclose(grpc_infer(served.urls.grpc, "tiny_onnx", x), expected(artifacts["torch"], x), atol=1e-5)


def _png(w: int, h: int, seed: int, mode: str = "RGB", fmt: str = "PNG") -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": None}[mode]
    shape = (h, w) if channels is None else (h, w, channels)
    img = Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)
    buf = io.BytesIO()
    img.save(buf, fmt)
    return buf.getvalue()


def test_preprocess_model_equals_preprocess_image(served):
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(served.urls.grpc)
    images = [_png(50, 40, 1), _png(17, 33, 2, "RGBA"), _png(64, 64, 3, "L"), _png(40, 30, 4, fmt="JPEG")]
    for data in images:  # one image per request
        inp = grpcclient.InferInput("image", [1, len(data)], "UINT8")
        inp.set_data_from_numpy(np.frombuffer(data, np.uint8)[None])
        got = client.infer("preprocess", [inp]).as_numpy("pixel_values")
        want = preprocess_image(data, PRE_SIZE)
        assert got.shape == (1, 3, *PRE_SIZE) and want.shape == (3, *PRE_SIZE)
        np.testing.assert_allclose(got[0], want, atol=1e-6, rtol=0)

    # several images in one request: rows zero-padded to one length (decoders ignore trailing bytes)
    width = max(map(len, images))
    rows = np.zeros((len(images), width), np.uint8)
    for i, data in enumerate(images):
        rows[i, : len(data)] = np.frombuffer(data, np.uint8)
    inp = grpcclient.InferInput("image", list(rows.shape), "UINT8")
    inp.set_data_from_numpy(rows)
    got = client.infer("preprocess", [inp]).as_numpy("pixel_values")
    np.testing.assert_allclose(got, np.stack([preprocess_image(d, PRE_SIZE) for d in images]), atol=1e-6, rtol=0)

    # a request that is not an image gets an error; the model keeps serving
    from tritonclient.utils import InferenceServerException

    junk = grpcclient.InferInput("image", [1, 5], "UINT8")
    junk.set_data_from_numpy(np.frombuffer(b"junk!", np.uint8)[None])
    with pytest.raises(InferenceServerException, match="cannot identify image"):
        client.infer("preprocess", [junk])
    assert client.is_model_ready("preprocess")


# -------------------------------------------------------------------------------------- failures


def test_broken_artifact_names_the_model_and_the_servers_error(triton_server_factory, artifacts, tmp_path):
    repo = tmp_path / "repo"
    add_model(repo, "good", runner_config("good", "onnxruntime", "model.onnx"), {"model.onnx": artifacts["onnx"]})
    add_model(repo, "broken", runner_config("broken", "onnxruntime", "model.onnx"), {"model.onnx": b"not an onnx file"})
    with pytest.raises(UserError) as err:
        triton_server_factory(repo, startup_timeout_s=60)
    msg = str(err.value)
    assert "'broken'" in msg and "'good'" not in msg
    assert "onnxruntime cannot load model.onnx" in msg  # the runner's own message, from the server's log
    assert "\n" not in msg


def test_string_image_input_is_refused_where_the_stub_corrupts_it(triton_server_factory, tmp_path):
    repo = tmp_path / "repo"
    config = PREPROCESS_CONFIG.replace("TYPE_UINT8", "TYPE_STRING").replace("dims: [ -1 ]", "dims: [ 1 ]")
    add_model(repo, "preprocess", config, {}, model_py=PREPROCESS)
    with pytest.raises(UserError, match=r"'preprocess'.*corrupts TYPE_STRING inputs.*TYPE_UINT8"):
        triton_server_factory(repo, startup_timeout_s=60)


def test_taken_port_is_a_user_error_naming_it(triton_install, tmp_path):
    (tmp_path / "repo").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(UserError, match=rf"grpc port {port} .*already in use"):
            TritonServer(tmp_path / "repo", install=triton_install, grpc_port=port).start()


def _group_members(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[2]) == pgid and fields[0] != "Z":
                pids.append(int(entry.name))
    return pids


def test_stop_leaves_no_process_behind(triton_server_factory, artifacts, tmp_path):
    repo = tmp_path / "repo"
    add_model(repo, "m", runner_config("m", "onnxruntime", "model.onnx"), {"model.onnx": artifacts["onnx"]})
    server = triton_server_factory(repo)
    pgid = server.pid
    assert len(_group_members(pgid)) >= 2  # tritonserver and the model's stub
    server.stop()
    assert _group_members(pgid) == []
    server.stop()  # twice is fine


def test_serve_background_and_stop_from_pidfile(triton_install, artifacts, tmp_path):
    repo = tmp_path / "repo"
    add_model(repo, "m", runner_config("m", "onnxruntime", "model.onnx"), {"model.onnx": artifacts["onnx"]})
    pidfile = tmp_path / "run" / "triton.pid"
    server = serve_background(repo, pidfile, install=triton_install)
    try:
        rec = read_pidfile(pidfile)
        assert rec.pid == server.pid and rec.grpc == server.urls.grpc and Path(rec.log_path).is_file()
        assert json.loads(pidfile.read_text())["http"] == server.urls.http
        x = np.ones((1, IN), np.float32)
        np.testing.assert_allclose(grpc_infer(rec.grpc, "m", x), expected(artifacts["torch"], x), atol=1e-5)
        with pytest.raises(UserError, match="already running"):
            serve_background(repo, pidfile, install=triton_install)
        assert stop_from_pidfile(pidfile) is True
        assert not pidfile.exists() and _group_members(rec.pgid) == []
        with pytest.raises(UserError, match="no pid file"):
            stop_from_pidfile(pidfile)
    finally:
        server.stop()


def test_perf_analyzer_runs_against_the_served_model(served, perf_analyzer_install, tmp_path):
    import subprocess

    from generator.formats.perfanalyzer import parse_csv

    out = tmp_path / "pa.csv"
    proc = subprocess.run(
        [str(perf_analyzer_install.binary), "-m", "tiny_onnx", "-u", served.urls.grpc, "-i", "grpc",
         "--concurrency-range", "1:2", "--measurement-interval", "500", "-f", str(out),
         # a busy 2-core machine: perf_analyzer's default 10% stability over 10 trials can give up on a step
         "--stability-percentage", "50", "--max-trials", "20"],
        capture_output=True, text=True, env=perf_analyzer_install.env, timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = parse_csv(out)
    assert [r["concurrency"] for r in rows] == [1, 2]
    assert all(r["throughput_infer_per_sec"] > 0 and r["p99_latency_ms"] > 0 for r in rows)


@pytest.mark.parametrize("what", ["grpc", "metrics"])
def test_port_taken_after_our_check_is_read_from_the_servers_log(triton_install, tmp_path, monkeypatch, what):
    import generator.serve.server as server_mod

    monkeypatch.setattr(server_mod, "_check_port_free", lambda *a, **k: None)  # lose the race on purpose
    (tmp_path / "repo").mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        server = TritonServer(tmp_path / "repo", install=triton_install, **{f"{what}_port": port})
        with pytest.raises(UserError, match=rf"{what} port {port} .*already in use"):
            server.start()
    assert _group_members(server.pid) == []
