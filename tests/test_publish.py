"""`tritongen publish` against a real S3-compatible server (moto's server mode on 127.0.0.1, a real HTTP
S3 API), and a real tritonserver reading the published repository from ``s3://``."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from specs import linear_model, write_spec

from generator.errors import UserError
from generator.build.pipeline import build
from generator.ship.publish import MANIFEST, on_progress, publish, read_published
from generator.serve.server import free_port
from generator.spec import load_spec

pytestmark = pytest.mark.server

BUCKET = "models"
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}


@pytest.fixture(scope="module")
def s3():
    """moto's S3 server on a free loopback port with bucket ``models``; stopped at teardown."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                              aws_access_key_id="testing", aws_secret_access_key="testing")
        client.create_bucket(Bucket=BUCKET)
        yield {"endpoint": endpoint, "client": client, "port": port}
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def aws_env(monkeypatch):
    for k, v in CREDS.items():
        monkeypatch.setenv(k, v)
    for k in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_PROFILE"):
        monkeypatch.delenv(k, raising=False)


def _linear(seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Linear(4, 3).eval()


def _build_lin(folder: Path, seed: int, **triton) -> Path:
    """An embedded repository of one ONNX variant of a Linear(4, 3) drawn with ``seed`` (a TorchScript source)."""
    folder.mkdir(parents=True, exist_ok=True)
    torch.jit.save(torch.jit.trace(_linear(seed), (torch.randn(2, 4),)), str(folder / "lin.ts.pt"))
    over = {"triton": triton} if triton else {}
    spec = load_spec(write_spec(folder, {"models": [linear_model(source={"torchscript": "lin.ts.pt"}, **over)]}))
    report = build(spec, folder / "repo", folder / "build", target="embedded")
    assert [r.status for r in report.results] == ["built"]
    return folder / "repo"


def _keys(s3, prefix: str) -> dict[str, bytes]:
    out = {}
    for page in s3["client"].get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for o in page.get("Contents", []):
            out[o["Key"]] = s3["client"].get_object(Bucket=BUCKET, Key=o["Key"])["Body"].read()
    return out


def _infer(url: str, x: np.ndarray, model: str = "lin__onnx") -> np.ndarray:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inp = grpcclient.InferInput("x", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return client.infer(model, [inp]).as_numpy("y")


def _want(seed: int, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return _linear(seed)(torch.from_numpy(x)).numpy()


ENSEMBLE = """
name: "lin_ens"
platform: "ensemble"
max_batch_size: 4
input [ { name: "x" data_type: TYPE_FP32 dims: [ 4 ] } ]
output [ { name: "y" data_type: TYPE_FP32 dims: [ 3 ] } ]
ensemble_scheduling { step [ { model_name: "lin__onnx" model_version: -1
  input_map { key: "x" value: "x" } output_map { key: "y" value: "y" } } ] }
"""


def test_published_repository_is_served_from_s3_and_equals_torch(s3, triton_server_factory, tmp_path):
    repo = _build_lin(tmp_path / "a", seed=1)
    (repo / "lin_ens" / "1").mkdir(parents=True)  # an ensemble: its version folder is empty, S3 has no folders
    (repo / "lin_ens" / "config.pbtxt").write_text(ENSEMBLE)
    url = f"s3://{BUCKET}/serve"
    report = publish(repo, url, endpoint_url=s3["endpoint"])
    assert report.triton_url == f"s3://{s3['endpoint']}/{BUCKET}/serve"
    keys = _keys(s3, "serve/")
    assert {"serve/lin__onnx/config.pbtxt", "serve/lin__onnx/1/model.onnx", "serve/lin__onnx/1/model.py",
            f"serve/{MANIFEST}"} <= set(keys)
    assert keys["serve/lin__onnx/1/model.onnx"] == (repo / "lin__onnx" / "1" / "model.onnx").read_bytes()
    # the published config is the local one pinned to the published version, valid for Triton's schema
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    remote = text_format.Parse(keys["serve/lin__onnx/config.pbtxt"].decode(), model_config_pb2.ModelConfig())
    local = text_format.Parse((repo / "lin__onnx" / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
    assert list(remote.version_policy.specific.versions) == [1]
    remote.ClearField("version_policy"), local.ClearField("version_policy")
    assert remote == local

    server = triton_server_factory(report.triton_url, env=CREDS, startup_timeout_s=120)
    x = np.random.default_rng(0).standard_normal((3, 4), dtype=np.float32)
    np.testing.assert_allclose(_infer(server.urls.grpc, x), _want(1, x), atol=1e-5, rtol=0)
    np.testing.assert_allclose(_infer(server.urls.grpc, x, "lin_ens"), _want(1, x), atol=1e-5, rtol=0)

    again = publish(repo, url, endpoint_url=s3["endpoint"])
    assert again.ops == [] and again.unchanged == ["lin__onnx", "lin_ens"]
    assert _keys(s3, "serve/") == keys  # byte for byte: nothing rewritten


def test_dry_run_writes_nothing_and_config_only_change_is_one_put(s3, tmp_path):
    repo = _build_lin(tmp_path / "a", seed=1)
    cache = repo / "lin__onnx" / "1" / "__pycache__"  # what a local python-backend server leaves behind
    cache.mkdir()
    (cache / "model.cpython-311.pyc").write_bytes(b"bytecode")
    url = f"s3://{BUCKET}/dry"
    plan = publish(repo, url, endpoint_url=s3["endpoint"], dry_run=True)
    files = [p for p in repo.rglob("*") if p.is_file() and "__pycache__" not in p.parts and not p.name.startswith(".")]
    assert plan.count("upload") == len(files) and _keys(s3, "dry/") == {}
    assert not any("__pycache__" in o.key for o in plan.ops)
    publish(repo, url, endpoint_url=s3["endpoint"])
    # a tuned config (other batching) travels alone: the artifacts stay where they are
    tuned = _build_lin(tmp_path / "b", seed=1, dynamic_batching={"max_queue_delay_microseconds": 777})
    seen = []
    report = publish(tuned, url, endpoint_url=s3["endpoint"], progress=on_progress(seen.append))
    assert [(o.kind, o.key) for o in seen] == [(o.kind, o.key) for o in report.ops]
    written = [o.key for o in report.ops]
    assert "dry/lin__onnx/config.pbtxt" in written and not any(k.endswith("model.onnx") for k in written)
    assert b"777" in _keys(s3, "dry/lin__onnx/config.pbtxt")["dry/lin__onnx/config.pbtxt"]
    assert read_published(url, s3["endpoint"])["models"]["lin__onnx"]["version"] == 1


def test_change_reaches_a_polling_server_whole_and_without_a_failed_request(s3, triton_server_factory, tmp_path):
    url = f"s3://{BUCKET}/poll"
    first = publish(_build_lin(tmp_path / "a", seed=1), url, endpoint_url=s3["endpoint"])
    server = triton_server_factory(first.triton_url, env=CREDS, model_control_mode="poll",
                                   extra_args=["--repository-poll-secs", "1"], startup_timeout_s=120)
    x = np.random.default_rng(1).standard_normal((2, 4), dtype=np.float32)
    old, new = _want(1, x), _want(2, x)
    answers, errors, stop = [], [], threading.Event()

    def client_loop():
        while not stop.is_set():
            try:
                answers.append(_infer(server.urls.grpc, x))
            except Exception as e:  # noqa: BLE001 -- every failure is what the test counts
                errors.append(repr(e))
            time.sleep(0.01)

    loop = threading.Thread(target=client_loop, daemon=True)
    loop.start()
    try:
        time.sleep(1.0)
        changed = _build_lin(tmp_path / "b", seed=2)
        report = publish(changed, url, endpoint_url=s3["endpoint"])
        kinds = [(o.kind, o.key.split("/", 2)[2]) for o in report.ops]
        # new version folder first, the pointer (config.pbtxt) after every file of it
        assert kinds.index(("upload", "config.pbtxt")) > max(i for i, (_, k) in enumerate(kinds) if k.startswith("2/"))
        assert ("upload", "2/model.onnx") in kinds and ("copy", "2/model.py") in kinds  # unchanged file: copied
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (answers and np.allclose(answers[-1], new, atol=1e-5)):
            time.sleep(0.2)
        time.sleep(1.0)
    finally:
        stop.set()
        loop.join(10)
    assert errors == []
    assert np.allclose(answers[-1], new, atol=1e-5), "the server never picked up the new version"
    for a in answers:  # every answer came from one whole model: old or new, never a mix
        assert np.allclose(a, old, atol=1e-5) or np.allclose(a, new, atol=1e-5)
    assert sum(np.allclose(a, old, atol=1e-5) for a in answers) > 0
    # the previous version is kept for servers still loading it; the next change retires it
    third = publish(_build_lin(tmp_path / "c", seed=3), url, endpoint_url=s3["endpoint"])
    assert ("delete", "poll/lin__onnx/1/model.onnx") in [(o.kind, o.key) for o in third.ops]
    assert read_published(url, s3["endpoint"])["models"]["lin__onnx"]["version"] == 3


def test_missing_bucket_no_network_and_foreign_prefix_are_one_line_errors(s3, tmp_path):
    repo = _build_lin(tmp_path / "a", seed=1)
    with pytest.raises(UserError, match=r"bucket 'no-such-bucket' does not exist"):
        publish(repo, "s3://no-such-bucket/x", endpoint_url=s3["endpoint"])
    closed = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(UserError, match=r"cannot reach the object store"):
        publish(repo, f"s3://{BUCKET}/x", endpoint_url=closed, retries=1)
    s3["client"].put_object(Bucket=BUCKET, Key="foreign/thing.txt", Body=b"not ours")
    with pytest.raises(UserError, match=r"did not publish"):
        publish(repo, f"s3://{BUCKET}/foreign", endpoint_url=s3["endpoint"])
    with pytest.raises(UserError, match=r"gs:// is not implemented"):
        publish(repo, "gs://bucket/x")


def test_rejected_credentials_are_a_one_line_error(tmp_path):
    """A second moto server with authentication on (INITIAL_NO_AUTH_ACTION_COUNT=0): unknown keys get 403."""
    import os

    repo = _build_lin(tmp_path / "a", seed=1)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
                            env={**os.environ, "INITIAL_NO_AUTH_ACTION_COUNT": "0"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        import urllib.request

        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/moto-api/", timeout=1)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        with pytest.raises(UserError, match=r"credentials rejected|access denied") as err:
            publish(repo, f"s3://{BUCKET}/x", endpoint_url=f"http://127.0.0.1:{port}")
        assert "\n" not in str(err.value)
    finally:
        proc.terminate()
        proc.wait(10)


def test_cli_publish_prints_the_triton_url(s3, tmp_path):
    repo = _build_lin(tmp_path / "a", seed=1)
    out = subprocess.run([sys.executable, "-m", "generator.cli", "publish", str(repo), f"s3://{BUCKET}/cli",
                          "--endpoint-url", s3["endpoint"]], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert f"s3://{s3['endpoint']}/{BUCKET}/cli" in out.stdout
    bad = subprocess.run([sys.executable, "-m", "generator.cli", "publish", str(repo), "s3://no-such-bucket/x",
                          "--endpoint-url", s3["endpoint"]], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "does not exist" in bad.stderr
