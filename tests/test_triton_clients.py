"""Triton's own clients against what tritongen builds (issue 19), on the real embedded tritonserver.

The tests drive the served models the way Triton's example clients do (client repository,
``src/python/examples/image_client.py`` and ``ensemble_image_client.py``): read the model's metadata and
config, take the image layout from the input's ``format`` (NCHW/NHWC, channels 1 or 3), lay out and scale
the pixels like ``image_client``'s ``preprocess`` (Pillow RGB, bilinear resize to (w, h), INCEPTION
scaling), send the encoded files as one BYTES element each like ``ensemble_image_client`` (a [n, 1] array
of ``dtype=bytes``), and ask every output for ``class_count``. Triton's frontends answer with
``score:index:label`` strings; the scores are compared with PyTorch on the same pixels.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from generator.errors import UserError
from generator.build.pipeline import build
from generator.loading.preprocess import preprocess_image
from generator.spec import load_spec, parse_spec
from specs import cnn_model, vit_model, write_spec

LABELS = [f"class {i}" for i in range(10)]


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    """vit (32x32, ensemble over image bytes, labels) and cnn (16x16, format given, no labels), embedded target."""
    work = tmp_path_factory.mktemp("clients")
    one = {"instance_group": [{"count": 1, "kind": "KIND_CPU"}], "intra_op_threads": 1}
    vit = vit_model(preprocess={"image": {"size": [32, 32]}, "instances": 1}, triton=one,
                    outputs=[{"name": "logits", "dtype": "float32", "shape": [10], "labels": LABELS}])
    cnn = cnn_model(inputs=[{"name": "images", "dtype": "float32", "shape": [3, 16, 16], "format": "FORMAT_NCHW"}],
                    triton=one, variants=["onnx", "openvino"])
    # an ensemble over an OpenVINO model: served at max_batch_size 1 on 24.10, so the ensemble takes 1 as well
    cnnov = cnn_model(name="cnnov", variants=["openvino"], triton=one, preprocess={"image": {"size": [16, 16]}})
    spec = load_spec(write_spec(work, {"models": [vit, cnn, cnnov]}))
    out = work / "embedded"
    report = build(spec, out, work / "build", target="embedded")
    assert all(r.status == "built" for r in report.results), [(r.variant, r.reason) for r in report.results]
    return out


def _clients(server):
    import tritonclient.grpc as grpcclient
    import tritonclient.http as httpclient

    return {"grpc": (grpcclient, grpcclient.InferenceServerClient(server.urls.grpc)),
            "http": (httpclient, httpclient.InferenceServerClient(server.urls.http))}


def _parse_model(protocol, client, name):
    """image_client.parse_model: one input and output, FP32 vector out, 3 dims + batch, NCHW or NHWC."""
    from tritonclient.grpc import model_config_pb2 as mc

    meta = client.get_model_metadata(name)
    config = client.get_model_config(name)
    if protocol == "grpc":
        config = config.config
        inp, out, mbs = meta.inputs[0], meta.outputs[0], config.max_batch_size
        fmt, shape, in_name, out_name = config.input[0].format, list(inp.shape), inp.name, out.name
        in_type, out_type, n_in, n_out = inp.datatype, out.datatype, len(meta.inputs), len(meta.outputs)
    else:
        inp, out, mbs = meta["inputs"][0], meta["outputs"][0], config["max_batch_size"]
        fmt = dict(mc.ModelInput.Format.items())[config["input"][0]["format"]]  # JSON gives the enum's name
        shape, in_name, out_name = list(inp["shape"]), inp["name"], out["name"]
        in_type, out_type, n_in, n_out = inp["datatype"], out["datatype"], len(meta["inputs"]), len(meta["outputs"])
    assert n_in == 1 and n_out == 1 and out_type == "FP32"
    assert fmt in (mc.ModelInput.FORMAT_NCHW, mc.ModelInput.FORMAT_NHWC), mc.ModelInput.Format.Name(fmt)
    dims = shape[1:] if mbs > 0 else shape
    assert len(dims) == 3
    c, h, w = dims if fmt == mc.ModelInput.FORMAT_NCHW else (dims[2], dims[0], dims[1])
    return {"mbs": mbs, "input": in_name, "output": out_name, "c": c, "h": h, "w": w,
            "nchw": fmt == mc.ModelInput.FORMAT_NCHW, "dtype": in_type}


def _image(seed: int, size: tuple[int, int], fmt: str = "PNG") -> bytes:
    from PIL import Image

    arr = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format=fmt)
    return buf.getvalue()


def _client_pixels(data: bytes, m: dict) -> np.ndarray:
    """image_client.preprocess with -s INCEPTION."""
    from PIL import Image
    from tritonclient.utils import triton_to_np_dtype

    img = Image.open(io.BytesIO(data))
    img = img.convert("L") if m["c"] == 1 else img.convert("RGB")
    x = np.array(img.resize((m["w"], m["h"]), Image.BILINEAR))
    if x.ndim == 2:
        x = x[:, :, None]
    x = x.astype(triton_to_np_dtype(m["dtype"])) / 127.5 - 1
    return np.transpose(x, (2, 0, 1)) if m["nchw"] else x


def _classes(row) -> list[tuple[float, int, str | None]]:
    """Triton's answers for one batch element: [(score, index, label or None)], as the example clients split them."""
    out = []
    for item in row:
        parts = "".join(chr(x) for x in item).split(":")
        out.append((float(parts[0]), int(parts[1]), parts[2] if len(parts) > 2 else None))
    return out


def _check_top_k(answers, logits: np.ndarray, k: int, labels):
    """Descending, k of them, each score PyTorch's for that class, none lower than PyTorch's k-th best."""
    tol = 1e-3
    assert len(answers) == k
    scores = [s for s, _, _ in answers]
    assert scores == sorted(scores, reverse=True)
    kth = np.sort(logits)[::-1][k - 1]
    for score, index, label in answers:
        assert abs(score - logits[index]) <= tol + 1e-6  # printed with 6 decimals (std::to_string)
        assert score >= kth - tol
        assert label == (labels[index] if labels else None)
    assert len({i for _, i, _ in answers}) == k


def _vit(x: np.ndarray) -> np.ndarray:
    from examples.vit import vit_tiny

    with torch.inference_mode():
        return vit_tiny()(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


def _cnn(x: np.ndarray) -> np.ndarray:
    from examples.cnn import small_cnn

    with torch.inference_mode():
        return small_cnn(width=8)(torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))).numpy()


@pytest.mark.server
@pytest.mark.parametrize("protocol", ["grpc", "http"])
def test_image_client_gets_labelled_top_k_equal_to_pytorch(repo, triton_server_factory, protocol):
    server = triton_server_factory(repo)
    mod, client = _clients(server)[protocol]
    files = [_image(1, (40, 30)), _image(2, (20, 64), "JPEG")]
    # cnn__openvino: max_batch_size 1 on 24.10 (its backend's padding bug), laid out like the others, so
    # image_client.py takes it with -b 1 (it refused the earlier max_batch_size 0, dims [-1, 3, 16, 16] layout)
    for name, reference, labels in (("vit__onnx", _vit, LABELS), ("cnn__onnx", _cnn, None),
                                    ("cnn__openvino", _cnn, None)):
        m = _parse_model(protocol, client, name)
        assert (m["c"], m["h"], m["w"]) == ((3, 32, 32) if name == "vit__onnx" else (3, 16, 16))
        assert m["mbs"] >= 1
        pixels = np.stack([_client_pixels(f, m) for f in files])
        per_request = 2 if m["mbs"] >= 2 else 1  # image_client -b 2, else -b 1
        for start in range(0, len(files), per_request):
            batch = pixels[start:start + per_request]
            inp = mod.InferInput(m["input"], list(batch.shape), m["dtype"])
            inp.set_data_from_numpy(batch)
            result = client.infer(name, [inp], outputs=[mod.InferRequestedOutput(m["output"], class_count=3)])
            answers = result.as_numpy(m["output"])
            assert answers.shape == (per_request, 3) and answers.dtype == np.object_
            for row, ref in zip(answers, reference(batch)):
                _check_top_k(_classes(row), ref, 3, labels)


@pytest.mark.server
def test_ensemble_client_sends_a_batch_of_two_differently_sized_images(repo, triton_server_factory):
    server = triton_server_factory(repo)
    files = [_image(3, (40, 30)), _image(4, (64, 20), "JPEG")]
    logits = _vit(np.stack([preprocess_image(f, size=(32, 32)) for f in files]))
    for protocol, (mod, client) in _clients(server).items():
        meta = client.get_model_metadata("vit__ensemble")
        config = client.get_model_config("vit__ensemble")
        if protocol == "grpc":
            in_name, outs, mbs = meta.inputs[0].name, [o.name for o in meta.outputs], config.config.max_batch_size
            assert len(meta.inputs) == 1 and meta.inputs[0].datatype == "BYTES"
        else:
            in_name, outs, mbs = meta["inputs"][0]["name"], [o["name"] for o in meta["outputs"]], config["max_batch_size"]
            assert len(meta["inputs"]) == 1 and meta["inputs"][0]["datatype"] == "BYTES"
        n = min(len(files), mbs)
        data = np.stack([np.array([f], dtype=bytes) for f in files[:n]], axis=0)  # as ensemble_image_client
        assert data.shape == (2, 1)
        inp = mod.InferInput(in_name, list(data.shape), "BYTES")
        if protocol == "grpc":
            inp.set_data_from_numpy(data)
            requested = [mod.InferRequestedOutput(o, class_count=5) for o in outs]
        else:
            inp.set_data_from_numpy(data, binary_data=True)
            requested = [mod.InferRequestedOutput(o, binary_data=True, class_count=5) for o in outs]
        result = client.infer("vit__ensemble", [inp], outputs=requested)
        answers = result.as_numpy("logits")
        assert answers.shape == (2, 5)
        for row, ref in zip(answers, logits):
            _check_top_k(_classes(row), ref, 5, LABELS)


@pytest.mark.server
def test_an_ensemble_over_openvino_batches_no_more_than_its_member(repo, triton_server_factory):
    """Triton refuses an ensemble allowing more than a step model: with the member at max_batch_size 1 (24.10's
    padding bug), the ensemble and its preprocessing model are rendered at 1 and load; one image per request."""
    import tritonclient.grpc as grpcclient

    for name in ("cnnov__ensemble", "cnnov__preprocess", "cnnov__openvino"):
        cfg = (repo / name / "config.pbtxt").read_text()
        assert "max_batch_size: 1\n" in cfg and "dynamic_batching" not in cfg, name
    server = triton_server_factory(repo)
    client = grpcclient.InferenceServerClient(server.urls.grpc)
    for seed, size in ((6, (40, 30)), (7, (16, 64))):
        f = _image(seed, size)
        inp = grpcclient.InferInput("image", [1, 1], "BYTES")
        inp.set_data_from_numpy(np.array([[f]], dtype=bytes))
        answers = client.infer("cnnov__ensemble", [inp],
                               outputs=[grpcclient.InferRequestedOutput("logits", class_count=3)]).as_numpy("logits")
        _check_top_k(_classes(answers[0]), _cnn(preprocess_image(f, size=(16, 16))[None])[0], 3, None)


@pytest.mark.server
def test_a_corrupt_element_is_named_and_the_server_keeps_serving(repo, triton_server_factory):
    import tritonclient.grpc as grpcclient
    from tritonclient.utils import InferenceServerException

    server = triton_server_factory(repo)
    client = grpcclient.InferenceServerClient(server.urls.grpc)
    good = _image(5, (33, 47))

    def send(elements):
        data = np.empty((len(elements), 1), dtype=object)
        for i, e in enumerate(elements):
            data[i, 0] = e
        inp = grpcclient.InferInput("image", list(data.shape), "BYTES")
        inp.set_data_from_numpy(data)
        return client.infer("vit__ensemble", [inp], outputs=[grpcclient.InferRequestedOutput("logits", class_count=1)])

    with pytest.raises(InferenceServerException, match=r"element 1 of 2 \(12 bytes\) is not an image"):
        send([good, b"not an image"])
    with pytest.raises(InferenceServerException, match=r"element 0 of 1"):
        send([good[: len(good) // 3]])  # a truncated PNG
    answers = send([good]).as_numpy("logits")
    ref = _vit(preprocess_image(good, size=(32, 32))[None])[0]
    _check_top_k(_classes(answers[0]), ref, 1, LABELS)
    assert server.is_running() and client.is_model_ready("vit__ensemble")


# ------------------------------------------------------------------------------------------- no server


def _model(**over):
    return parse_spec({"models": [vit_model(**over)]}, __import__("pathlib").Path("/tmp/spec.yaml")).models[0]


def test_format_is_inferred_from_the_preprocessing_layout_and_checked():
    assert _model(preprocess={"image": {"size": [32, 32]}}).inputs[0].format == "FORMAT_NCHW"
    assert _model().inputs[0].format is None
    nhwc = [{"name": "pixel_values", "dtype": "float32", "shape": [32, 32, 3]}]
    assert _model(inputs=nhwc, preprocess={"image": {"size": [32, 32], "layout": "NHWC"}}).inputs[0].format == "FORMAT_NHWC"
    with pytest.raises(UserError, match=r"models\[0\].inputs\[0\].format: FORMAT_NHWC but preprocess.image.layout is NCHW"):
        _model(inputs=[{"name": "pixel_values", "dtype": "float32", "shape": [3, 32, 3], "format": "FORMAT_NHWC"}],
               preprocess={"image": {"size": [32, 3]}})  # a shape both formats accept
    with pytest.raises(UserError, match=r"inputs\[0\].format: FORMAT_NHWC puts the channels at dim 2, which is 32"):
        _model(inputs=[{**vit_model()["inputs"][0], "format": "FORMAT_NHWC"}])
    with pytest.raises(UserError, match=r"inputs\[0\].format: FORMAT_NCHW needs 3 dims .* the shape has 1"):
        _model(inputs=[{"name": "x", "dtype": "float32", "shape": [8], "format": "FORMAT_NCHW"}])
    with pytest.raises(UserError, match=r"inputs\[0\].format: 'NCHW' is not one of FORMAT_NCHW, FORMAT_NHWC"):
        _model(inputs=[{**vit_model()["inputs"][0], "format": "NCHW"}])


def test_labels_from_a_list_or_a_file_one_per_class(tmp_path):
    out = {"name": "logits", "dtype": "float32", "shape": [10]}
    assert _model(outputs=[{**out, "labels": LABELS}]).outputs[0].labels == tuple(LABELS)
    (tmp_path / "labels.txt").write_text("\n".join(f"n{i}" for i in range(10)) + "\n")
    spec = load_spec(write_spec(tmp_path, {"models": [vit_model(outputs=[{**out, "labels": "labels.txt"}])]}))
    assert spec.models[0].outputs[0].labels == tuple(f"n{i}" for i in range(10))
    with pytest.raises(UserError, match=r"outputs\[0\].labels: 9 labels for 10 classes"):
        _model(outputs=[{**out, "labels": LABELS[:9]}])
    with pytest.raises(UserError, match=r"outputs\[0\].labels: file 'missing.txt' not found"):
        load_spec(write_spec(tmp_path, {"models": [vit_model(outputs=[{**out, "labels": "missing.txt"}])]}, "s2.yaml"))
    # labels and format change configs only: the artifacts' cache key stays
    assert _model(outputs=[{**out, "labels": LABELS}]).artifact_hash() == _model().artifact_hash()


def test_configs_carry_format_and_label_filename_and_the_files_are_written(repo):
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2 as mc

    def cfg(name):
        return text_format.Parse((repo / name / "config.pbtxt").read_text(), mc.ModelConfig())

    for name in ("vit__onnx", "vit__ensemble"):
        c = cfg(name)
        assert c.output[0].label_filename == "labels.txt"
        assert (repo / name / "labels.txt").read_text().splitlines() == LABELS
    assert cfg("vit__onnx").input[0].format == mc.ModelInput.FORMAT_NCHW
    assert cfg("cnn__onnx").input[0].format == mc.ModelInput.FORMAT_NCHW
    assert cfg("cnn__onnx").output[0].label_filename == "" and not (repo / "cnn__onnx" / "labels.txt").exists()
    ens = cfg("vit__ensemble")
    assert ens.input[0].data_type == mc.TYPE_STRING and list(ens.input[0].dims) == [1]
    pre = cfg("vit__preprocess")
    assert pre.parameters["EXECUTION_ENV_PATH"].string_value  # the numpy<2 + Pillow stub environment


def test_uint8_keeps_the_padded_byte_rows(tmp_path):
    from generator.config.render import ensemble_context, preprocess_context

    model = _model(preprocess={"image": {"size": [32, 32], "dtype": "uint8"}})
    assert ensemble_context(model, "onnx", "s")["inputs"][0] == {"name": "image", "data_type": "TYPE_UINT8", "dims": [-1]}
    assert "EXECUTION_ENV_PATH" not in preprocess_context(model, "s", "/env")["parameters"]
    with pytest.raises(UserError, match=r"preprocess.image.dtype: 'bytes' is not one of string, uint8"):
        _model(preprocess={"image": {"size": [32, 32], "dtype": "bytes"}})


def test_hugging_face_folders_give_id2label_and_the_image_format(tmp_path):
    import json

    from tests.models import hf_folders

    for kind, make in (("vit", hf_folders.vit), ("bert_seq", lambda d: hf_folders.bert(d, "seq"))):
        folder = make(tmp_path / kind)
        cfg = json.loads((folder / "config.json").read_text())
        want = tuple(cfg["id2label"][str(i)] for i in range(len(cfg["id2label"])))
        spec = tmp_path / f"{kind}.yaml"
        spec.write_text(f"models:\n  - name: m\n    source: {{huggingface: {folder}}}\n")
        model = load_spec(spec).models[0]
        assert model.outputs[0].labels == want
        if kind == "vit":
            assert model.inputs[0].format == "FORMAT_NCHW"
        # the spec's own output gets id2label too, unless it gives labels
        spec.write_text(f"models:\n  - name: m\n    source: {{huggingface: {folder}}}\n    outputs: [{{name: logits, "
                        f"dtype: float32, shape: [{len(want)}]}}]\n")
        assert load_spec(spec).models[0].outputs[0].labels == want


def test_init_with_an_image_size_writes_the_format(tmp_path):
    from generator.init import init_spec

    from examples.cnn import small_cnn

    write_spec(tmp_path, {"models": [cnn_model()]}, "unused.yaml")  # links examples/ beside the spec
    torch.save(small_cnn().state_dict(), tmp_path / "cnn.pt")  # the factory default width
    text = init_spec(tmp_path / "cnn.pt", tmp_path / "s.yaml", factory="examples.cnn:small_cnn",
                     image={"size": [16, 16]})
    assert "\"format\": \"FORMAT_NCHW\"" in text
    assert load_spec(tmp_path / "s.yaml").models[0].inputs[0].format == "FORMAT_NCHW"


@pytest.mark.server
def test_perf_analyzer_sends_the_image_folder_through_the_ensemble(repo, triton_server_factory, perf_analyzer_install,
                                                                   tmp_path):
    """``tritongen perf --images``: perf_analyzer accepts the generated --input-data and every request succeeds."""
    from perf import inputs, pa_driver

    (tmp_path / "imgs").mkdir()
    for i, (size, fmt) in enumerate((((40, 30), "PNG"), ((64, 20), "JPEG"))):
        (tmp_path / "imgs" / f"{i}.{fmt.lower()}").write_bytes(_image(10 + i, size, fmt))
    server = triton_server_factory(repo)
    feeds = inputs.feeds_for(repo / "vit__ensemble", inputs.RealInputs(images=tmp_path / "imgs"), n=2)
    data = inputs.write_input_data(feeds, tmp_path / "input_data.json")
    spec = load_spec(write_spec(tmp_path / "spec", {"models": [vit_model(preprocess={"image": {"size": [32, 32]}})]}))
    step = pa_driver.run_step(perf_analyzer_install, "vit__ensemble", server.urls.grpc, spec.models[0], 1,
                              tmp_path / "pa", data, measurement_mode="count_windows", request_count=8,
                              stability_pct=1000.0, max_trials=3, retries=0, timeout_s=240)
    log = "\n".join(p.read_text() for p in (tmp_path / "pa").glob("*.log"))
    assert not step.aborted, log[-800:]
    assert step.requests > 0 and step.throughput > 0


def test_validate_catches_a_label_file_that_does_not_fit(repo, tmp_path):
    import shutil

    from generator.config.validate import validate_repository

    shutil.copytree(repo / "vit__onnx", tmp_path / "r" / "vit__onnx")
    assert all(r.ok for r in validate_repository(tmp_path / "r"))
    (tmp_path / "r" / "vit__onnx" / "labels.txt").write_text("\n".join(LABELS[:9]) + "\n")
    problems = [p for r in validate_repository(tmp_path / "r") for p in r.problems]
    assert any("vit__onnx/labels.txt: 9 labels for output 'logits' with 10 classes" in p and "[label-file: " in p
               for p in problems), problems


def test_perf_measures_the_ensemble_only_with_real_inputs(repo, tmp_path):
    from perf.harness import discover
    from perf.inputs import RealInputs

    (tmp_path / "imgs").mkdir()
    (tmp_path / "imgs" / "a.png").write_bytes(_image(1, (8, 8)))
    assert "vit__ensemble" not in {t.name for t in discover(repo)}
    with_files = {t.name for t in discover(repo, real=RealInputs(images=tmp_path / "imgs"))}
    assert "vit__ensemble" in with_files and "vit__preprocess" not in with_files
    assert "vit__ensemble" not in {t.name for t in discover(repo, real=RealInputs(sentences=tmp_path / "s.txt"))}
