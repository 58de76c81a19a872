"""Inputs by name, outputs by key (issue 14 items 2-4): what reaches forward(), what leaves the graph,
how outputs whose size follows no input are declared and verified, and what a failed gate says."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import Tolerance, load_spec
from generator.stages.verify import judge
from specs import write_spec

IDS = [{"name": "token_type_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 2]},  # not forward()'s order
       {"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 6]}]


def _two_ids(**over):
    m = {"name": "ids", "source": {"factory": "tinymodels.named_io:two_ids"}, "inputs": IDS,
         "outputs": [{"name": "code", "dtype": "int64", "shape": ["seq"]},
                     {"name": "score", "dtype": "float32", "shape": ["seq"]}],
         "dims": {"seq": [1, 4, 8]}, "max_batch_size": 2, "variants": ["onnx", "torchscript"]}
    m.update(over)
    return m


def _encoder(**over):
    m = {"name": "enc", "source": {"factory": "tinymodels.named_io:encoder"},
         "inputs": [{"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, 50]}],
         "outputs": [{"name": "embedding", "key": "pooler_output", "dtype": "float32", "shape": [4]},
                     {"name": "last_hidden_state", "dtype": "float32", "shape": ["seq", 8]},
                     {"name": "nonzero", "dtype": "bool", "shape": [1]}],
         "dims": {"seq": [1, 4, 8]}, "max_batch_size": 2, "variants": ["onnx", "torchscript"]}
    m.update(over)
    return m


def _build(workdir, models, **kw):
    spec = load_spec(write_spec(workdir, {"models": models}))
    return build(spec, workdir / "model_repository", workdir / "build", **kw)


def _session(workdir, name):
    return ort.InferenceSession(str(workdir / "model_repository" / name / "1" / "model.onnx"),
                                providers=["CPUExecutionProvider"])


@pytest.mark.slow
def test_inputs_reach_forward_by_name_and_int_outputs_are_exact(workdir):
    from tinymodels.named_io import two_ids

    report = _build(workdir, [_two_ids()])
    assert [r.status for r in report.results] == ["built", "built"], [r.reason for r in report.results]
    ids = np.array([[1, 2, 3]], np.int64)
    types = np.array([[0, 1, 1]], np.int64)
    code, score = two_ids()(input_ids=torch.from_numpy(ids), token_type_ids=torch.from_numpy(types))
    sess = _session(workdir, "ids__onnx")
    assert [i.name for i in sess.get_inputs()] == ["token_type_ids", "input_ids"]
    got = sess.run(["code", "score"], {"token_type_ids": types, "input_ids": ids})
    np.testing.assert_array_equal(got[0], code.numpy())  # [[10, 21, 31]]: not [[1, 12, 13]] (swapped)
    np.testing.assert_allclose(got[1], score.detach().numpy(), atol=1e-5)
    ts = torch.jit.load(str(workdir / "model_repository" / "ids__torchscript" / "1" / "model.pt"))
    t_code, t_score = ts(torch.from_numpy(types), torch.from_numpy(ids))  # Triton's libtorch feeds config order
    np.testing.assert_array_equal(t_code.numpy(), code.numpy())
    checks = report.results[0].verification["checks"]
    assert all(c["max_abs"] == 0 for c in checks if c["output"] == "code")


@pytest.mark.slow
def test_dict_outputs_by_key_and_an_output_named_like_an_internal_value(workdir):
    from tinymodels.named_io import encoder

    report = _build(workdir, [_encoder()])
    assert [r.status for r in report.results] == ["built", "built"], [r.reason for r in report.results]
    ids = np.array([[3, 4, 5, 6, 7]], np.int64)
    ref = encoder()(torch.from_numpy(ids))
    sess = _session(workdir, "enc__onnx")
    assert [o.name for o in sess.get_outputs()] == ["embedding", "last_hidden_state", "nonzero"]
    emb, hidden, nz = sess.run(None, {"input_ids": ids})
    np.testing.assert_allclose(emb, ref["pooler_output"].detach().numpy(), atol=1e-5)
    np.testing.assert_allclose(hidden, ref["last_hidden_state"].detach().numpy(), atol=1e-6)
    assert nz.dtype == np.bool_ and nz.tolist() == [[True]]
    ts = torch.jit.load(str(workdir / "model_repository" / "enc__torchscript" / "1" / "model.pt"))
    np.testing.assert_allclose(ts(torch.from_numpy(ids))[0].detach().numpy(), emb, atol=1e-5)
    cfg = text_format.Parse((workdir / "model_repository" / "enc__onnx" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert [o.name for o in cfg.output] == ["embedding", "last_hidden_state", "nonzero"]
    assert cfg.output[2].data_type == model_config_pb2.TYPE_BOOL


@pytest.mark.slow
@pytest.mark.parametrize("shape,dims", [([-1, 8], {}), (["frames", 8], {"frames": [1, 13, 100]})],
                         ids=["minus-one", "derived-named-dim"])
def test_output_dim_that_follows_no_input_is_dynamic_and_verified_at_every_point(workdir, shape, dims):
    from tinymodels.named_io import frames

    model = {"name": "audio", "source": {"factory": "tinymodels.named_io:frames"},
             "inputs": [{"name": "input_values", "dtype": "float32", "shape": ["samples"]}],
             "outputs": [{"name": "hidden", "dtype": "float32", "shape": shape}],
             "dims": {"samples": [16, 64, 400], **dims}, "max_batch_size": 2, "variants": ["onnx"]}
    report = _build(workdir, [model])
    r = report.results[0]
    assert r.status == "built", r.reason
    assert {c["point"] for c in r.verification["checks"]} >= {"batch=1,samples=16", "batch=1,samples=400"}
    cfg = text_format.Parse((workdir / "model_repository" / "audio__onnx" / "config.pbtxt").read_text(),
                            model_config_pb2.ModelConfig())
    assert list(cfg.output[0].dims) == [-1, 8]
    x = np.random.default_rng(0).standard_normal((1, 100)).astype(np.float32)
    got = _session(workdir, "audio__onnx").run(None, {"input_values": x})[0]
    ref = frames()(torch.from_numpy(x)).detach().numpy()
    assert got.shape == ref.shape == (1, 24, 8)
    np.testing.assert_allclose(got, ref, atol=1e-5)


FRAMES = {"name": "audio", "source": {"factory": "tinymodels.named_io:frames"},
          "inputs": [{"name": "input_values", "dtype": "float32", "shape": ["samples"]}],
          "outputs": [{"name": "hidden", "dtype": "float32", "shape": ["frames", 8]}],
          "dims": {"samples": [16, 64, 400], "frames": [1, 13, 100]}, "max_batch_size": 2, "variants": ["onnx"]}


def test_a_named_dim_only_outputs_use_is_derived_and_rendered_minus_one():
    from generator.spec import parse_spec

    m = parse_spec({"models": [FRAMES]}, Path("/tmp/spec.yaml")).models[0]
    assert m.derived_dims == ("frames",)
    assert m.dims == {"samples": (16, 64, 400)}  # only input dims drive shapes, points and profiles
    assert m.outputs[0].shape == (-1, 8) and m.outputs[0].triton_dims() == [-1, 8]
    typo = {**FRAMES, "outputs": [{"name": "hidden", "dtype": "float32", "shape": ["frame", 8]}]}
    with pytest.raises(UserError, match=r"models\[0\]\.outputs\[0\]\.shape\[0\]: dim 'frame' is not declared"):
        parse_spec({"models": [typo]}, Path("/tmp/spec.yaml"))


@pytest.mark.slow
def test_a_derived_output_dim_keeps_the_rank_checked_against_pytorch(workdir):
    # the model returns [batch, frames, 8]: a derived dim declared where PyTorch has none is a one-line error
    wrong = {**FRAMES, "outputs": [{"name": "hidden", "dtype": "float32", "shape": ["frames"]}]}
    spec = load_spec(write_spec(workdir, {"models": [wrong]}))
    with pytest.raises(UserError, match=r"models\[0\]\.outputs\[0\]"):
        build(spec, workdir / "model_repository", workdir / "build")
    assert not (workdir / "model_repository").exists()


@pytest.mark.slow
def test_tiny_reference_is_judged_on_absolute_error_alone(workdir):
    model = {"name": "tiny", "source": {"factory": "tinymodels.named_io:tiny"},
             "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
             "outputs": [{"name": "y", "dtype": "float32", "shape": [4]}], "max_batch_size": 2,
             "variants": ["onnx", "onnx-int8-dynamic"]}
    report = _build(workdir, [model])
    assert [r.status for r in report.results] == ["built", "built"], [r.reason for r in report.results]


@pytest.mark.parametrize("model, match", [
    (_two_ids(inputs=[IDS[1], {**IDS[0], "name": "segment_ids"}]),
     "models[0].inputs[1].name: 'segment_ids' is not a parameter of forward(input_ids, token_type_ids, scale)"),
    (_two_ids(inputs=[IDS[1]]), "forward(input_ids, token_type_ids, scale) needs 'token_type_ids'"),
    (_encoder(outputs=[{"name": "embedding", "dtype": "float32", "shape": [4]}]),
     "models[0].outputs[0].name: 'embedding' is not a tensor key of what forward() returns (keys: "
     "last_hidden_state, pooler_output, nonzero)"),
    (_encoder(outputs=[{"name": "e", "key": 7, "dtype": "float32", "shape": [4]}]),
     "models[0].outputs[0].key: index 7 is out of range"),
])
def test_names_that_do_not_match_are_one_line_errors(workdir, model, match):
    spec = load_spec(write_spec(workdir, {"models": [model]}))
    with pytest.raises(UserError) as e:
        build(spec, workdir / "model_repository", workdir / "build")
    assert match in str(e.value) and "\n" not in str(e.value)


def test_minus_one_is_for_outputs_only(workdir):
    bad = _two_ids(inputs=[{**IDS[0], "shape": [-1]}, IDS[1]])
    with pytest.raises(UserError, match=r"models\[0\]\.inputs\[0\]\.shape\[0\]: -1 is for outputs only"):
        load_spec(write_spec(workdir, {"models": [bad]}))


@pytest.mark.slow
def test_a_forward_that_specialises_on_the_batch_is_named_as_the_cause(workdir):
    """RAFT-like: the dynamo exporter fixed the batch dim at the traced 2 and said nothing. The fixed dim is now
    caught, the legacy exporter tried, and the failure at batch 1 names the cause (with ONNX Runtime's whole
    message, not its first line)."""
    m = {"name": "bb", "source": {"factory": "tinymodels.named_io:batch_branch"},
         "inputs": [{"name": "x", "dtype": "float32", "shape": [3, 4]}],
         "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}], "max_batch_size": 4, "variants": ["onnx"]}
    report = _build(workdir, [m])
    (r,) = report.results
    assert r.status == "failed"
    assert r.reason.startswith("gate not reached: runtime error at batch=1: [ONNXRuntimeError]")
    assert "Input shape:{1,3,4}, requested shape:{2,12}" in r.reason  # past its first line, without its C++ source
    assert "the dynamo exporter fixed input 'x' dim 0 (batch) at 2 in the graph: forward() specialises" in r.reason
    assert "checks" not in r.verification or not r.verification["checks"]  # no numbers to show: the table shows '-'


@pytest.mark.slow
def test_an_output_that_is_one_value_everywhere_is_warned_about(workdir):
    """All zeros from PyTorch on every random input: every variant answering zeros passes; the build says the
    check is blind for that output (a warning: the model may be right)."""
    from generator.build.pipeline import Events

    lines = []

    class Record(Events):
        def log(self, model, text):
            lines.append(text)

    m = {"name": "dead", "source": {"factory": "tinymodels.named_io:dead_head"},
         "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
         "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}], "max_batch_size": 2, "variants": ["onnx"]}
    report = _build(workdir, [m], events=Record())
    assert [r.status for r in report.results] == ["built"]
    blind = [s for s in lines if s.startswith("warning: ")]
    assert len(blind) == 1 and "outputs[0] 'y': PyTorch's forward() gives 0 everywhere on random inputs" in blind[0]
    lines.clear()
    _build(workdir, [_encoder(variants=["onnx"])], events=Record())  # outputs that vary: no warning
    assert not [s for s in lines if s.startswith("warning: ")]


def _per_sample(**over):
    m = {"name": "ps", "source": {"factory": "tinymodels.named_io:per_sample"},
         "inputs": [{"name": "x", "dtype": "float32", "shape": [4]},
                    {"name": "temperature", "dtype": "float32", "shape": []}],
         "outputs": [{"name": "score", "dtype": "float32", "shape": []},
                     {"name": "label", "dtype": "int64", "shape": []}],
         "max_batch_size": 4, "variants": ["onnx", "torchscript"]}
    m.update(over)
    return m


@pytest.mark.server
def test_a_scalar_per_sample_is_dims_1_reshaped_and_a_real_server_answers_it(workdir, triton_server_factory):
    """shape [] (one value per sample, batch dim aside): Triton wants non-empty dims, so the config says dims [1]
    with ``reshape: { shape: [ ] }``; Triton's core turns the client's [batch, 1] into the model's [batch] and
    the model's [batch] outputs back into [batch, 1]. Checked against Triton's schema and rules, then served."""
    import tritonclient.grpc as grpcclient

    from generator.config.validate import validate_repository
    from perf import loadgen
    from tinymodels.named_io import per_sample

    spec = load_spec(write_spec(workdir, {"models": [_per_sample()]}))
    native = build(spec, workdir / "native", workdir / "build")
    assert [r.status for r in native.results] == ["built", "built"], [r.reason for r in native.results]
    for name in ("ps__onnx", "ps__torchscript"):
        cfg = text_format.Parse((workdir / "native" / name / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        for t in list(cfg.input[1:]) + list(cfg.output):
            assert list(t.dims) == [1] and t.HasField("reshape") and list(t.reshape.shape) == [], (name, t)
        assert list(cfg.input[0].dims) == [4] and not cfg.input[0].HasField("reshape")
        assert cfg.model_warmup and all(list(w.inputs["temperature"].dims) == [1] for w in cfg.model_warmup)
    reports = validate_repository(workdir / "native")
    assert all(not r.problems for r in reports), [(r.name, r.problems) for r in reports]
    # a hand-edited config without the reshape: validate names the fix
    cfg_path = workdir / "native" / "ps__onnx" / "config.pbtxt"
    cfg_path.write_text(cfg_path.read_text().replace("reshape: { shape: [ ] }", "", 1))
    problems = [q for r in validate_repository(workdir / "native") for q in r.problems]
    assert len(problems) == 1 and "input 'temperature' dims [1] but the graph has rank 0 [] after the batch dim; " \
        "add reshape: { shape: [ ] }" in problems[0], problems

    build(spec, workdir / "embedded", workdir / "build", target="embedded")
    server = triton_server_factory(workdir / "embedded")
    client = grpcclient.InferenceServerClient(server.urls.grpc)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((3, 4)).astype(np.float32)
    temp = rng.uniform(0.5, 2.0, (3, 1)).astype(np.float32)
    with torch.no_grad():
        ref = per_sample()(torch.from_numpy(x), torch.from_numpy(temp[:, 0]))
    for name in ("ps__onnx", "ps__torchscript"):
        meta = client.get_model_metadata(name, as_json=True)
        assert [o["shape"] for o in meta["outputs"]] == [["-1", "1"], ["-1", "1"]]
        ins = [grpcclient.InferInput("x", [3, 4], "FP32"), grpcclient.InferInput("temperature", [3, 1], "FP32")]
        ins[0].set_data_from_numpy(x)
        ins[1].set_data_from_numpy(temp)
        got = client.infer(name, ins)
        assert got.as_numpy("score").shape == (3, 1) and got.as_numpy("label").shape == (3, 1)
        np.testing.assert_allclose(got.as_numpy("score")[:, 0], ref["score"].numpy(), rtol=1e-5, atol=1e-5)
        assert (got.as_numpy("label")[:, 0] == ref["label"].numpy()).all()
    # the load generator sends what the API takes: [1, 1] for the scalar, [1, 4] for x
    feeds = loadgen.samples(spec.models[0], n=2)
    assert feeds[0]["temperature"].shape == (1, 1) and feeds[0]["x"].shape == (1, 4)
    step = loadgen.run_step("grpc", server.urls.grpc, "ps__onnx", feeds, ["score", "label"], 1, warmup_s=0.2,
                            measurement_s=1.0)
    assert step.errors == 0 and step.requests > 0, step.error_samples


@pytest.mark.slow
def test_a_branch_on_a_tensor_value_is_named_where_a_trace_froze_it(workdir):
    """dynamo refuses ``if x.sum() > 0:``, the legacy exporter and torch.jit.trace keep the branch their example
    took: each variant says where (file:line and the code), whether or not our inputs happened to expose it."""
    report = _build(workdir, [{"name": "br", "source": {"factory": "tinymodels.named_io:branchy"},
                               "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
                               "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}],
                               "max_batch_size": 2, "variants": ["onnx", "torchscript"]}])
    for r in report.results:
        note = r.info.get("traced_branch", "")
        assert note.startswith("forward() branches on a tensor's value at named_io.py:"), (r.variant, r.info)
        assert "`if x.sum() > 0:`" in note and "torch.where" in note
        if r.status == "failed":  # the gate saw the other branch: the note is its likely cause
            assert r.reason.endswith(f"(likely cause: {note})"), r.reason
    # the script method keeps the branch inside the graph: no note, and it passes on both branches' inputs
    report = _build(workdir, [{"name": "br", "source": {"factory": "tinymodels.named_io:branchy"},
                               "inputs": [{"name": "x", "dtype": "float32", "shape": [4]}],
                               "outputs": [{"name": "y", "dtype": "float32", "shape": [3]}],
                               "max_batch_size": 2, "variants": [{"name": "torchscript",
                                                                  "options": {"method": "script"}}]}])
    assert report.results[0].status == "built" and "traced_branch" not in report.results[0].info


def test_branch_warnings_from_library_code_are_not_reported(tmp_path):
    """torch's and transformers' own checks (``if padding_idx >= weight.size(0)``, ``if num_channels != ...``)
    warn the same way on every trace; only the user's code is named."""
    import warnings

    from generator.stages.export import traced_branch

    user = tmp_path / "nets.py"
    user.write_text("def f(x):\n    if x.mean() > 0:\n        return x\n")
    lib = tmp_path / "venv" / "lib" / "python3.11" / "site-packages" / "torch" / "nn" / "functional.py"
    lib.parent.mkdir(parents=True)
    lib.write_text("if padding_idx >= weight.size(0):\n")
    msg = "Converting a tensor to a Python boolean might cause the trace to be incorrect."

    def record(path, line):
        return warnings.WarningMessage(torch.jit.TracerWarning(msg), torch.jit.TracerWarning, str(path), line)

    assert traced_branch([record(lib, 1)]) == ""
    assert traced_branch([record(lib, 1), record(user, 2)]).startswith(
        "forward() branches on a tensor's value at nets.py:2 (`if x.mean() > 0:`):")


def test_gate_messages_name_the_criterion_and_numbers():
    ref = np.array([1.0, 2.0, 3.0], np.float32)
    c = judge(ref, ref + np.array([0, 0, 0.5], np.float32), Tolerance(atol=1e-3, rtol=1e-3, min_cosine=0.9999))
    assert not c["ok"] and "abs/rel: 1 of 3 values over atol 0.001 + rtol 0.001·|ref|" in c["why"]
    assert "worst |Δ| 5.00e-01 at |ref| 3.00e+00" in c["why"] and "cosine 0.99" in c["why"]
    c = judge(ref, -ref, Tolerance(min_cosine=0.98))  # an INT8-style gate: cosine only
    assert c["why"] == "cosine -1.000000 < min_cosine 0.98"
    c = judge(np.array([1, 2], np.int64), np.array([1, 3], np.int64), Tolerance(atol=10, min_cosine=0.5))
    assert not c["ok"] and c["why"].startswith("exact (int64 output): 1 of 2 values differ")
    tiny = np.array([1e-41, -2e-41, 3e-41], np.float32)
    assert judge(tiny, tiny * 0, Tolerance(min_cosine=0.9999))["ok"]  # cosine would be 0
    c = judge(tiny, tiny + 1e-3, Tolerance(min_cosine=0.9999))
    assert not c["ok"] and "degenerate reference" in c["why"] and "judged on absolute error alone" in c["why"]
    c = judge(ref, ref[:2], Tolerance(atol=1))
    assert c["why"] == "shape [2] but PyTorch gives [3]"


def test_int_outputs_are_exact_unless_the_gate_allows_an_agreement_fraction():
    """Indices picked from floats (argmax, top-k) move where INT8 moves two close scores past each other: exact by
    default, with the knob named in the message; ``min_int_agreement`` sets the fraction that must match."""
    ref = np.arange(10, dtype=np.int64)
    got = ref.copy()
    got[3] = 7  # 1 of 10 differs: 90% agreement
    c = judge(ref, got, Tolerance(min_cosine=0.98))
    assert not c["ok"] and c["why"] == ("exact (int64 output): 1 of 10 values differ (max|Δ| 4); indices picked from "
                                        "floats (argmax, top-k) may move in a lossy variant: verify.min_int_agreement")
    assert judge(ref, got, Tolerance(min_int_agreement=0.9))["ok"]
    c = judge(ref, got, Tolerance(min_int_agreement=0.95))
    assert c["why"] == "agreement (int64 output): 0.9000 of values equal PyTorch's < min_int_agreement 0.95 (1 of 10 differ, max|Δ| 4)"
    assert judge(ref, ref, Tolerance())["ok"]
    b = np.array([True, False, True, True])
    assert not judge(b, ~b, Tolerance(min_int_agreement=0.5))["ok"]  # bools too: 0 of 4 agree


def test_forward_with_kwargs_takes_any_name_and_says_which_go_there():
    from generator.loading.inputs import call_module, call_plan
    from generator.spec import parse_spec

    class KW(torch.nn.Module):
        def forward(self, input_ids, **kwargs):
            return input_ids * 2 + kwargs["extra"]

    m = parse_spec({"models": [_two_ids(inputs=[IDS[1], {**IDS[0], "name": "extra"}],
                                        outputs=[{"name": "y", "dtype": "int64", "shape": ["seq"]}])]},
                   Path("/nonexistent/spec.yaml")).models[0]
    plan = call_plan(KW(), m)
    assert plan.by_name and plan.only_kwargs == ("extra",)
    y = call_module(KW(), m, plan, [torch.tensor([[1, 2]]), torch.tensor([[10, 20]])])
    assert y.tolist() == [[12, 24]]
