"""Target releases (generator/tables/releases.py): the configs tritongen renders for a release avoid that release's
native-backend failures, ``tritongen validate --triton-version`` flags each failure on a hand-broken copy,
every ONNX Runtime / OpenVINO variant is verified with the target's runtime, and the embedded twin fails where
Triton 24.10's native backends fail (real tritonserver, tests/conftest.py)."""

from __future__ import annotations

import json
import re
import shutil

import numpy as np
import pytest
from click.testing import CliRunner

from generator.tables import releases
from generator.errors import UserError
from generator.serve.runtimes import openvino_padding_rows
from generator.config.validate import parse_config, validate_repository
from specs import cnn_model, write_spec

OLD, NEW = "24.10", releases.NEWEST


def test_release_table_lookups():
    r = releases.release("r24.10-py3")
    assert (r.name, r.onnxruntime, r.openvino, r.tritonserver) == ("24.10", "1.19.2", "2024.4.0", "2.51.0")
    assert r.pip_requirement("onnxruntime") == "onnxruntime==1.19.2"
    assert releases.behaves("24.10", "pytorch_interop_abort") and not releases.behaves("25.11", "pytorch_interop_abort")
    assert all(releases.behaves(n, "openvino_padding_bug") for n in releases.RELEASES)  # still so on main
    assert releases.release(None).name == NEW and releases.EMBEDDED == "24.10"
    with pytest.raises(LookupError, match="known: 24.10"):
        releases.release("23.01")
    for b in releases.BEHAVIOURS.values():
        assert b.source and b.summary


def test_spec_key_triton_version(tmp_path):
    from generator.spec import load_spec

    spec = write_spec(tmp_path, {"triton_version": "r24.10", "models": [cnn_model()]})
    assert load_spec(spec).triton_version == "24.10"
    spec.write_text(spec.read_text().replace("r24.10", "24.10").replace("'24.10'", "24.10"))  # unquoted: a float
    with pytest.raises(UserError, match=r"^triton_version: .*'24.1'.*quote it"):
        load_spec(spec)


@pytest.mark.parametrize("sizes,stale,rows", [
    ([1] * 8, 0, 7),  # warm-up batch 8 = 8 requests of batch 1: the last one gets no row (24.10: load fails)
    ([8], 7, 1),      # a full batch after a batch-1 execution keeps its pad of 7
    ([3, 5], 0, 3),   # merged requests adding up to max_batch_size
    ([8], 0, 8),      # a full batch first: fine
    ([2, 3], 7, 5),   # below max_batch_size: the pad is right
])
def test_openvino_padding_rows_follow_the_backend(sizes, stale, rows):
    assert openvino_padding_rows(sizes, 8, stale)[0] == rows


# ------------------------------------------------------------------------------------------ rendering


def _spec(tmp_path, name="spec.yaml"):
    pytorch = {"INFERENCE_MODE": True, "INTER_OP_THREAD_COUNT": 1}
    models = [
        cnn_model(variants=["torchscript", "openvino", "onnx-int8"], max_batch_size=4,
                  triton={"backend": {"pytorch": pytorch}, "warmup": True,
                          "dynamic_batching": {"preferred_batch_size": [4], "max_queue_delay_microseconds": 100}}),
        cnn_model(name="cnn2", variants=["torchscript"], triton={"backend": {"pytorch": pytorch}}),
    ]
    return write_spec(tmp_path, {"models": models}, name)


@pytest.mark.parametrize("release", [OLD, NEW])
@pytest.mark.parametrize("target", ["triton", "embedded"])
def test_rendered_configs_avoid_the_release_failures(tmp_path, release, target):
    from generator.config.render import config_context, render, template_for
    from generator.spec import load_spec
    from generator.variants import REGISTRY

    spec = load_spec(_spec(tmp_path))
    m = spec.model("cnn")
    texts = {}
    for vs in m.variants:
        v = REGISTRY[vs.name]
        text = render(config_context(m, v, vs, target=target, release=release), template_for(v, target))
        cfg, problem = parse_config(text, vs.name)  # Triton's own schema
        assert problem is None, problem
        texts[vs.name] = cfg
    pt = texts["torchscript"].parameters
    assert ("INTER_OP_THREAD_COUNT" in pt) is (release == NEW)  # 24.10 aborts on the second model setting it
    ov = texts["openvino"]
    # padding bug: served at max_batch_size 1, no Triton batching (a batch-1 execution equals max_batch_size: no pad)
    assert ov.max_batch_size == 1 and not ov.HasField("dynamic_batching")
    assert ov.parameters["ENABLE_BATCH_PADDING"].string_value == "NO"
    # dims and format as a batching model's: Triton's image_client.py takes it (3 dims + batch, NCHW)
    assert list(ov.input[0].dims) == [3, 16, 16] and list(ov.output[0].dims) == [10]
    assert [w.batch_size for w in ov.model_warmup] == [1]  # the batch-4 warm-up would exceed max_batch_size 1
    assert list(ov.model_warmup[0].inputs["images"].dims) == [3, 16, 16]
    assert set(releases.OPENVINO_PARAMETERS) <= set(ov.parameters)  # nothing logged at error level
    assert texts["onnx-int8"].max_batch_size == 4  # other backends keep batching
    if target == "embedded":
        assert ov.parameters["triton_version"].string_value == release
        assert "openvino_padding_bug" in ov.parameters["native_behaviours"].string_value


# ------------------------------------------------------------------ a built repository, validate, target runtimes


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from generator.build.pipeline import build

    d = tmp_path_factory.mktemp("rel")
    from generator.spec import load_spec

    spec = load_spec(_spec(d))
    report = build(spec, d / "repo", d / "build", triton_version=OLD)
    assert not report.failed, [(r.variant, r.reason) for r in report.failed]
    return {"repo": d / "repo", "report": report, "dir": d}


def _copy(built, tmp_path):
    repo = tmp_path / "repo"
    shutil.copytree(built["repo"], repo)
    return repo


def _problems(repo, release):
    reports = validate_repository(repo, release)
    return [p for r in reports for p in r.problems], [w for r in reports for w in r.warnings]


def test_built_repository_passes_validate_for_its_release(built):
    problems, warnings = _problems(built["repo"], OLD)
    assert problems == []
    assert not [w for w in warnings if "[openvino-" in w or "[pytorch-interop" in w], warnings
    man = json.loads((built["repo"] / "cnn__openvino" / "manifest.json").read_text())
    assert man["triton_version"] == OLD and man["outputs"] == ["logits"]
    ts = json.loads((built["repo"] / "cnn__torchscript" / "manifest.json").read_text())["info"]["target_verification"]
    assert ts["runtime"] == "libtorch" and "not verified here" in ts["unavailable"]  # said, not silently skipped


@pytest.mark.parametrize("variant", ["openvino", "onnx-int8"])
def test_variants_are_verified_with_the_targets_runtime(built, variant):
    man = json.loads((built["repo"] / f"cnn__{variant}" / "manifest.json").read_text())
    tv = man["info"]["target_verification"]
    runtime = "openvino" if variant == "openvino" else "onnxruntime"
    want = releases.release(OLD).pip_requirement(runtime)
    if "unavailable" in tv:  # offline: said in one line and recorded, never skipped silently
        pytest.skip(tv["unavailable"])
    assert tv["requirement"] == want and tv["version"].startswith(want.split("==")[1])
    assert tv["passed"] is True and tv["max_abs"] >= 0 and man["verification"]["max_abs"] >= 0


def test_validate_flags_two_pytorch_models_setting_inter_op_threads(built, tmp_path):
    repo = _copy(built, tmp_path)
    extra = '\nparameters {\n  key: "INTER_OP_THREAD_COUNT"\n  value: { string_value: "1" }\n}\n'
    for name in ("cnn__torchscript", "cnn2__torchscript"):
        p = repo / name / "config.pbtxt"
        p.write_text(p.read_text() + extra)
    problems, _ = _problems(repo, OLD)
    hits = [p for p in problems if "[pytorch-interop-threads: " in p]
    assert len(hits) == 2 and all("aborts the server" in h for h in hits), problems
    assert any(h.startswith("cnn__torchscript/config.pbtxt: ") and "also set by cnn2__torchscript" in h for h in hits)
    problems, _ = _problems(repo, NEW)  # guarded from 25.11
    assert not [p for p in problems if "pytorch-interop" in p]


def test_validate_flags_a_batched_openvino_config(built, tmp_path):
    repo = _copy(built, tmp_path)
    p = repo / "cnn__openvino" / "config.pbtxt"
    assert "max_batch_size: 1\n" in p.read_text()  # as built: never padded
    text = p.read_text().replace("max_batch_size: 1\n", "max_batch_size: 4\n")
    text = re.sub(r'(key: "ENABLE_BATCH_PADDING"\s*value: \{ string_value: )"NO"', r'\1"YES"', text)
    text = text.replace('name: "warmup_batch_1"\n    batch_size: 1', 'name: "warmup_batch_4"\n    batch_size: 4')
    p.write_text(text)
    assert parse_config(text, "x")[1] is None
    problems, _ = _problems(repo, OLD)
    hits = [p for p in problems if "[openvino-padding-bug: " in p]
    assert hits and "model_warmup 'warmup_batch_4' batch_size 4 = max_batch_size" in hits[0], problems
    assert "got 3" in hits[0]


def test_validate_flags_renamed_torchscript_output(built, tmp_path):
    repo = _copy(built, tmp_path)
    p = repo / "cnn__torchscript" / "config.pbtxt"
    p.write_text(p.read_text().replace('name: "logits"', 'name: "scores"'))
    for release in (None, OLD):
        problems, _ = _problems(repo, release)
        hits = [p for p in problems if "[libtorch-output-names: " in p]
        assert hits and "output 'scores' at position 0: the model's output 0 is 'logits'" in hits[0], problems


def test_validate_flags_an_unbatched_ir_with_a_batch_layout(built, tmp_path):
    import openvino as ov

    repo = _copy(built, tmp_path)
    xml = repo / "cnn__openvino" / "1" / "model.xml"
    model = ov.Core().read_model(str(xml))
    # as built: the batching spec's IR has an 'N' layout on every port, its config max_batch_size 1
    assert all(ov.layout_helpers.get_layout(p).has_name("N") for p in list(model.inputs) + list(model.outputs))
    problems, warnings = _problems(repo, OLD)
    assert not [f for f in problems + warnings if "openvino-ir-layout" in f], problems + warnings
    p = repo / "cnn__openvino" / "config.pbtxt"  # served unbatched by hand, the IR left as it is
    p.write_text(re.sub(r"model_warmup \[.*?\n\]\n", "", p.read_text(), flags=re.S)
                 .replace("max_batch_size: 1\n", "max_batch_size: 0\n").replace("dims: [ ", "dims: [ -1, "))
    problems, _ = _problems(repo, OLD)
    assert any("[openvino-ir-layout: " in p and "auto-complete turns batching on" in p for p in problems), problems


def test_validate_warns_on_missing_openvino_parameters(built, tmp_path):
    repo = _copy(built, tmp_path)
    p = repo / "cnn__openvino" / "config.pbtxt"
    p.write_text(re.sub(r'parameters \{\n  key: "CPU_EXTENSION_PATH"\n  value: \{ string_value: "" \}\n\}\n', "",
                        p.read_text()))
    _, warnings = _problems(repo, OLD)
    assert any("[openvino-parameters-explicit: " in w and "CPU_EXTENSION_PATH" in w for w in warnings), warnings


def test_cli_validate_with_triton_version(built, tmp_path):
    from generator.cli import cli

    repo = _copy(built, tmp_path)
    p = repo / "cnn__torchscript" / "config.pbtxt"
    p.write_text(p.read_text().replace('name: "logits"', 'name: "scores"'))
    res = CliRunner().invoke(cli, ["validate", str(repo), "--triton-version", "24.10"])
    out = " ".join(res.output.split())
    assert res.exit_code == 1 and "output 'scores' at position 0" in out and "[libtorch-output-names: " in out, out
    res = CliRunner().invoke(cli, ["validate", str(built["repo"]), "--triton-version", "22.01"])
    assert res.exit_code == 1 and "not a release tritongen knows" in res.output and "Traceback" not in res.output


# ----------------------------------------------------------------------------- the twin, in a real server


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    from generator.build.pipeline import build
    from generator.spec import load_spec

    d = tmp_path_factory.mktemp("twin")
    spec = load_spec(_spec(d))
    report = build(spec, d / "repo", d / "build", target="embedded")
    assert not report.failed, [(r.variant, r.reason) for r in report.failed]
    return d / "repo"


def _infer(server, model, batch, seed=0):
    import tritonclient.http as http

    x = np.random.default_rng(seed).standard_normal((batch, 3, 16, 16)).astype(np.float32)
    client = http.InferenceServerClient(server.urls.http)
    inp = http.InferInput("images", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return x, client.infer(model, [inp]).as_numpy("logits")


def test_rendered_embedded_repository_loads_and_answers_like_pytorch(embedded, triton_server_factory):
    import torch

    server = triton_server_factory(embedded)  # every model READY: the rendered configs hit no 24.10 failure
    import tritonclient.utils

    for model in ("cnn__openvino", "cnn__torchscript", "cnn2__torchscript"):
        ref_module = torch.jit.load(str(embedded / model.replace("openvino", "torchscript") / "1" / "model.pt"))
        # openvino: max_batch_size 1 (every execution one batch-1 request: 24.10's padding never triggers)
        for i, batch in enumerate((1, 1, 1) if model == "cnn__openvino" else (1, 4, 1, 4)):
            x, got = _infer(server, model, batch, seed=10 * batch + i)
            with torch.no_grad():
                ref = ref_module(torch.from_numpy(x))
            ref = (ref[0] if isinstance(ref, (tuple, list)) else ref).numpy()
            np.testing.assert_allclose(got, ref, atol=1e-3, rtol=1e-3)
    with pytest.raises(tritonclient.utils.InferenceServerException, match="batch-size must be <= 1"):
        _infer(server, "cnn__openvino", 4)  # Triton's core refuses it, as it would before the native backend


def test_twin_refuses_the_second_model_setting_inter_op_threads(embedded, tmp_path, triton_server_factory):
    repo = tmp_path / "repo"
    shutil.copytree(embedded, repo)
    extra = '\nparameters {\n  key: "INTER_OP_THREAD_COUNT"\n  value: { string_value: "1" }\n}\n'
    for name in ("cnn__torchscript", "cnn2__torchscript"):
        p = repo / name / "config.pbtxt"
        p.write_text(p.read_text() + extra)
    with pytest.raises(UserError, match=r"INTER_OP_THREAD_COUNT is also set by cnn2?__torchscript: Triton 24.10's "
                                        r"pytorch backend .* aborts the whole server"):
        triton_server_factory(repo)


def test_twin_fails_a_batched_openvino_warmup_like_24_10(embedded, tmp_path, triton_server_factory):
    repo = tmp_path / "repo"
    shutil.copytree(embedded, repo)
    for d in repo.iterdir():
        if d.is_dir() and d.name != "cnn__openvino":
            shutil.rmtree(d)
    p = repo / "cnn__openvino" / "config.pbtxt"
    text = p.read_text().replace("max_batch_size: 1\n", "max_batch_size: 4\n")
    text = re.sub(r'(key: "ENABLE_BATCH_PADDING"\s*value: \{ string_value: )"NO"', r'\1"YES"', text)
    p.write_text(text.replace('name: "warmup_batch_1"\n    batch_size: 1', 'name: "warmup_batch_4"\n    batch_size: 4'))
    with pytest.raises(UserError, match=r"cnn__openvino.*expected batch size of at least 4 in model output, got 3"):
        triton_server_factory(repo)


def test_twin_fails_a_full_batch_after_a_smaller_one_like_24_10(embedded, tmp_path, triton_server_factory):
    import tritonclient.utils

    repo = tmp_path / "repo"
    shutil.copytree(embedded, repo)
    p = repo / "cnn__openvino" / "config.pbtxt"
    text = p.read_text().replace("max_batch_size: 1\n", "max_batch_size: 4\n")
    text = re.sub(r'(key: "ENABLE_BATCH_PADDING"\s*value: \{ string_value: )"NO"', r'\1"YES"', text)
    text = re.sub(r"model_warmup \[.*?\n\]\n", "", text, flags=re.S)
    p.write_text(text)
    server = triton_server_factory(repo)
    _infer(server, "cnn__openvino", 4)  # a full batch first: fine
    _infer(server, "cnn__openvino", 1)  # pad 3 is left behind
    with pytest.raises(tritonclient.utils.InferenceServerException, match="expected batch size of at least 4"):
        _infer(server, "cnn__openvino", 4)


# rule id -> the test above whose hand-broken config breaks it (tests/test_backend_rules.py's every-rule check)
RULE_TESTS = {
    "pytorch-interop-threads": test_validate_flags_two_pytorch_models_setting_inter_op_threads,
    "openvino-padding-bug": test_validate_flags_a_batched_openvino_config,
    "openvino-ir-layout": test_validate_flags_an_unbatched_ir_with_a_batch_layout,
    "openvino-parameters-explicit": test_validate_warns_on_missing_openvino_parameters,
    "libtorch-output-names": test_validate_flags_renamed_torchscript_output,
}


@pytest.mark.parametrize("release", [OLD, NEW])
@pytest.mark.parametrize("target", ["triton", "embedded"])
def test_example_spec_renders_no_config_hitting_the_release_failures(tmp_path, release, target):
    """Every config of examples/spec.yaml, rendered for the release, through the release-aware rules."""
    from generator.config import rules as backend_rules
    from generator.config.rules import release_rules as rules_release
    from generator.config.render import config_context, render, template_for
    from generator.spec import load_spec
    from generator.variants import REGISTRY
    from specs import ROOT

    spec = load_spec(ROOT / "examples" / "spec.yaml")
    repo = tmp_path / "repo"
    rendered = []
    for m in spec.models:
        for vs in m.variants:
            v = REGISTRY[vs.name]
            if v.runtime not in ("onnxruntime", "openvino", "torchscript", "aoti"):
                continue
            ctx = config_context(m, v, vs, target=target, release=release)
            (repo / ctx["name"] / "1").mkdir(parents=True)
            (repo / ctx["name"] / "config.pbtxt").write_text(render(ctx, template_for(v, target)))
            rendered.append(ctx["name"])
    assert {"small_cnn__openvino", "small_cnn__torchscript", "vit_b16__torchscript", "vit_b16__openvino-int8"} <= set(rendered)
    ov8, _ = parse_config((repo / "vit_b16__openvino-int8" / "config.pbtxt").read_text(), "vit_b16__openvino-int8")
    # the padding bug (every release so far): OpenVINO served at max_batch_size 1, no dynamic batcher, its input
    # laid out for Triton's image_client.py (3 dims + batch, a format)
    assert ov8.max_batch_size == 1 and list(ov8.input[0].dims) == [3, 224, 224] and not ov8.HasField("dynamic_batching")
    assert ov8.input[0].format == ov8.input[0].FORMAT_NCHW
    from generator.config.rules import client_rules

    # the release rules, and core's input-format rule
    checks = (rules_release.check_interop_threads, rules_release.check_openvino_padding,
              rules_release.check_openvino_explicit, client_rules.check_input_format)
    findings = []
    for name in rendered:
        cfg, problem = parse_config((repo / name / "config.pbtxt").read_text(), name)
        assert problem is None, problem
        t = backend_rules.Target(cfg=cfg, model_dir=repo / name, versions=[1], engine=backend_rules.normalize_engine(cfg),
                                 release=release)
        findings += [f.text for check in checks for f in check(t)]
    assert findings == []
