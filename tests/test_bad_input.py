"""Bad input during a build: one line naming the field or file and the fix, exit code 1 from the
CLI, and nothing written to the output (the old repository stays exactly as it was)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import load_spec
from specs import linear_model, write_spec

pytestmark = pytest.mark.slow


def _fails(workdir, model, match):
    spec = load_spec(write_spec(workdir, {"models": [model]}))
    out = workdir / "model_repository"
    with pytest.raises(UserError) as e:
        build(spec, out, workdir / "build")
    msg = str(e.value)
    assert match in msg, msg
    assert "\n" not in msg
    assert not out.exists(), "nothing may be written to the output"
    assert not list(workdir.glob(".model_repository.*")), "no staging folder may be left"
    return msg


def test_missing_checkpoint(workdir):
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "checkpoint": "nope.pt"}),
           "models[0].source.checkpoint: file")


def test_corrupt_checkpoint(workdir):
    (workdir / "bad.pt").write_bytes(b"this is not a zip file" * 10)
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "checkpoint": "bad.pt"}),
           "models[0].source.checkpoint: 'bad.pt' is not a torch checkpoint (it starts with b'this'")


def test_corrupt_safetensors(workdir):
    (workdir / "bad.safetensors").write_bytes(b"\x00" * 20)
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "checkpoint": "bad.safetensors"}),
           "'bad.safetensors' is not a readable safetensors file")


def test_factory_module_not_importable(workdir):
    _fails(workdir, linear_model(source={"factory": "nosuchpkg.models:make"}),
           "models[0].source.factory: cannot import module 'nosuchpkg.models'")


def test_factory_callable_missing(workdir):
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:nothing_here"}), "has no callable 'nothing_here'")


def test_factory_returns_no_module(workdir):
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:not_a_module"}), "not a torch.nn.Module")


def test_factory_rejects_kwargs(workdir):
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "kwargs": {"colour": 1}}),
           "models[0].source.kwargs: tinymodels.tiny:linear rejected them")


def test_state_dict_key_mismatch_suggests_strip_prefix(workdir):
    from tinymodels.tiny import linear

    torch.save({f"model.{k}": v for k, v in linear().state_dict().items()}, workdir / "w.pt")
    msg = _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "checkpoint": "w.pt"}),
                 "state_dict keys do not match the model")
    assert "2 missing (e.g. fc.weight" in msg and 'strip_prefix: "model."' in msg


def test_strip_prefix_and_state_dict_key_load_lightning_style_checkpoints(workdir):
    from tinymodels.tiny import linear

    sd = {f"model.{k}": v * 0 + 0.5 for k, v in linear().state_dict().items()}
    torch.save({"state_dict": sd, "epoch": 3}, workdir / "w.ckpt")
    spec = load_spec(write_spec(workdir, {"models": [linear_model(source={
        "factory": "tinymodels.tiny:linear", "checkpoint": "w.ckpt", "state_dict_key": "state_dict",
        "strip_prefix": "model."})]}))
    report = build(spec, workdir / "model_repository", workdir / "build")
    assert report.results[0].status == "built"


def test_batchnorm_checkpoint_without_num_batches_tracked_loads_as_torch_does(workdir):
    """Checkpoints from before PyTorch 0.4.1 and converted ones (safetensors, other frameworks) carry no
    ``num_batches_tracked``; torch's strict load fills it in when no version metadata says it must be there,
    so tritongen loads them too, and still refuses one whose metadata says the key was dropped."""
    from safetensors.torch import save_file
    from tinymodels.tiny import normed_linear

    full = normed_linear().state_dict()
    plain = {k: v.clone() for k, v in full.items() if not k.endswith("num_batches_tracked")}
    torch.save(plain, workdir / "old.pt")
    save_file(plain, str(workdir / "old.safetensors"))
    for name in ("old.pt", "old.safetensors"):
        spec = load_spec(write_spec(workdir, {"models": [linear_model(
            source={"factory": "tinymodels.tiny:normed_linear", "checkpoint": name})]}))
        report = build(spec, workdir / "model_repository", workdir / "build")
        assert report.results[0].status == "built", (name, report.results[0])
    import shutil

    shutil.rmtree(workdir / "model_repository")
    dropped = normed_linear().state_dict()  # an OrderedDict whose metadata says version 2 ...
    del dropped["bn.num_batches_tracked"]  # ... and the key removed by hand: torch refuses it, so do we
    torch.save(dropped, workdir / "dropped.pt")
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:normed_linear", "checkpoint": "dropped.pt"}),
           "1 missing (e.g. bn.num_batches_tracked)")


def test_a_folder_as_checkpoint_says_so(workdir):
    (workdir / "weights").mkdir()
    (workdir / "hf").mkdir()
    (workdir / "hf" / "config.json").write_text("{}")
    for folder, hint in (("weights", ""), ("hf", " (a Hugging Face folder: source.huggingface)")):
        with pytest.raises(UserError) as e:
            load_spec(write_spec(workdir, {"models": [linear_model(
                source={"factory": "tinymodels.tiny:linear", "checkpoint": folder})]}))
        assert str(e.value).startswith("models[0].source.checkpoint: '") and \
            str(e.value).endswith(f"{folder}' is a folder; give the state_dict file in it{hint}"), str(e.value)


def test_a_factory_giving_new_random_weights_each_call_is_caught_against_the_cached_export(workdir):
    """No checkpoint and no seed: the second build reuses the first's ONNX (same key) but loads new weights for the
    variant it adds, so the repository would mix two models. The weights' fingerprint says so in one line."""
    model = linear_model(source={"factory": "tinymodels.tiny:unseeded_linear"})
    spec = load_spec(write_spec(workdir, {"models": [model]}))
    assert build(spec, workdir / "model_repository", workdir / "build").results[0].status == "built"
    before = (workdir / "model_repository" / "lin__onnx" / "1" / "model.onnx").read_bytes()
    spec = load_spec(write_spec(workdir, {"models": [{**model, "variants": ["onnx", "torchscript"]}]}))
    with pytest.raises(UserError) as e:
        build(spec, workdir / "model_repository", workdir / "build")
    assert str(e.value).startswith("models[0].source: tinymodels.tiny:unseeded_linear gave other weights than when "
                                   "the cached ONNX was exported"), str(e.value)
    assert "seed the factory (torch.manual_seed)" in str(e.value) and "\n" not in str(e.value)
    assert (workdir / "model_repository" / "lin__onnx" / "1" / "model.onnx").read_bytes() == before
    assert not (workdir / "model_repository" / "lin__torchscript").exists()
    # --force exports again from the weights of this run: one model in the repository
    report = build(spec, workdir / "model_repository", workdir / "build", force=True)
    assert [r.status for r in report.results] == ["built", "built"]


def test_a_sharded_checkpoint_loads_from_its_index_and_a_missing_shard_is_one_line(workdir):
    """save_pretrained / save_torch_state_dict split big state_dicts into shards with a *.index.json: the index
    is the checkpoint, every shard keys the cache, and the graph holds the checkpoint's weights."""
    import onnxruntime as ort
    from huggingface_hub import save_torch_state_dict
    from tinymodels.tiny import normed_linear

    trained = normed_linear()
    with torch.no_grad():
        for t in trained.state_dict().values():
            if t.is_floating_point():
                t.add_(0.5)  # not the factory's init: only a real load gives these
    save_torch_state_dict(trained.state_dict(), str(workdir), max_shard_size=50)  # bytes: one tensor a shard
    index = "model.safetensors.index.json"
    assert len(list(workdir.glob("model-*-of-*.safetensors"))) > 1
    model = linear_model(source={"factory": "tinymodels.tiny:normed_linear", "checkpoint": index})
    spec = load_spec(write_spec(workdir, {"models": [model]}))
    assert spec.models[0].source.files()[1:] == sorted(workdir.glob("model-*-of-*.safetensors"))
    assert build(spec, workdir / "model_repository", workdir / "build").results[0].status == "built"
    x = np.random.default_rng(0).standard_normal((2, 4)).astype(np.float32)
    sess = ort.InferenceSession(str(workdir / "model_repository" / "lin__onnx" / "1" / "model.onnx"))
    with torch.no_grad():
        want = trained(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], want, rtol=1e-5, atol=1e-5)
    # a shard gone, an index without weight_map: one line each, when the spec is read
    last = sorted(workdir.glob("model-*-of-*.safetensors"))[-1]
    last.rename(workdir / "elsewhere.safetensors")
    with pytest.raises(UserError) as e:
        load_spec(write_spec(workdir, {"models": [model]}))
    assert str(e.value) == (f"models[0].source.checkpoint: '{index}' names shard '{last.name}', which is not beside it; "
                            "copy every shard next to the index")
    (workdir / "bad.index.json").write_text('{"metadata": {}}')
    with pytest.raises(UserError) as e:
        load_spec(write_spec(workdir, {"models": [linear_model(
            source={"factory": "tinymodels.tiny:normed_linear", "checkpoint": "bad.index.json"})]}))
    assert "'bad.index.json' has no weight_map of tensor -> shard file" in str(e.value)


def test_state_dict_shape_mismatch(workdir):
    from tinymodels.tiny import linear

    torch.save(linear(n_out=7).state_dict(), workdir / "w.pt")
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "checkpoint": "w.pt"}),
           "tensor shape(s) differ: fc.weight (7, 4) vs model (3, 4)")


def test_checkpoint_holding_a_pickled_module_is_refused_without_trust(workdir):
    from tinymodels.tiny import linear

    torch.save(linear(), workdir / "full.pt")
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:linear", "checkpoint": "full.pt"}),
           "holds a pickled tinymodels.tiny.Linear, not only tensors (weights_only=True refuses it)")


def test_a_lightning_checkpoint_with_python_objects_loads_only_with_source_trust(workdir):
    """weights_only=True refuses a .ckpt whose hyper-parameters are Python objects; the one line names
    source.trust, and with it the state_dict inside loads (the graph holds its weights)."""
    import onnxruntime as ort
    from tinymodels.tiny import HParams, linear

    trained = linear()
    with torch.no_grad():
        trained.fc.weight.add_(1.0)
    torch.save({"state_dict": {f"model.{k}": v for k, v in trained.state_dict().items()},
                "hyper_parameters": HParams(lr=0.1), "epoch": 3}, workdir / "last.ckpt")
    source = {"factory": "tinymodels.tiny:linear", "checkpoint": "last.ckpt", "state_dict_key": "state_dict",
              "strip_prefix": "model."}
    msg = _fails(workdir, linear_model(source=source), "holds a pickled tinymodels.tiny.HParams, not only tensors")
    assert "set source.trust: true for a file you made yourself" in msg
    spec = load_spec(write_spec(workdir, {"models": [linear_model(source={**source, "trust": True})]}))
    assert build(spec, workdir / "model_repository", workdir / "build").results[0].status == "built"
    x = np.ones((1, 4), np.float32)
    got = ort.InferenceSession(str(workdir / "model_repository" / "lin__onnx" / "1" / "model.onnx")).run(None, {"x": x})[0]
    with torch.no_grad():
        np.testing.assert_allclose(got, trained(torch.from_numpy(x)).numpy(), rtol=1e-5, atol=1e-5)
    with pytest.raises(UserError) as e:  # trust is for a checkpoint: a factory without one has nothing to unpickle
        load_spec(write_spec(workdir, {"models": [linear_model(source={"factory": "tinymodels.tiny:linear",
                                                                       "trust": True})]}))
    assert "source.trust: only used with huggingface (and trust with a factory's checkpoint)" in str(e.value)


def test_trusted_pickle_loads(workdir):
    from tinymodels.tiny import linear

    torch.save(linear(), workdir / "full.pt")
    spec = load_spec(write_spec(workdir, {"models": [linear_model(source={"pickle": {"path": "full.pt", "trust": True}})]}))
    assert build(spec, workdir / "model_repository", workdir / "build").results[0].status == "built"


def test_forward_fails_on_declared_inputs(workdir):
    _fails(workdir, linear_model(inputs=[{"name": "x", "dtype": "float32", "shape": [5]}]),
           "models[0].inputs: forward() failed on the declared inputs (x[1, 5]:float32)")


def test_output_count_mismatch(workdir):
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:two_outputs"}),
           "models[0].outputs: the model returns 2 tensor(s) but the spec declares 1")


def test_output_shape_mismatch(workdir):
    _fails(workdir, linear_model(outputs=[{"name": "y", "dtype": "float32", "shape": [4]}]),
           "models[0].outputs[0].shape: declared [4]")


def test_output_without_the_batch_dim_says_so(workdir):
    msg = _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:with_weights"},
                                       outputs=[{"name": "y", "dtype": "float32", "shape": [3]},
                                                {"name": "w", "dtype": "float32", "shape": [4]}]),
                 "models[0].outputs[1]: the model returns [4] at batch=1, without the batch dim first")
    assert msg.endswith("or set max_batch_size: 0")


def test_a_python_autograd_function_fails_torchscript_only_naming_it(workdir):
    spec = load_spec(write_spec(workdir, {"models": [linear_model(
        source={"factory": "tinymodels.tiny:with_autograd_function"}, variants=["onnx", "torchscript"])]}))
    report = build(spec, workdir / "model_repository", workdir / "build")
    onnx, ts = report.results
    assert onnx.status == "built" and ts.status == "failed"
    assert ts.reason == ("torchscript: the traced model calls the Python function '_Scale2' (a torch.autograd.Function "
                         "in the model's code), which TorchScript cannot save; serve the onnx or torch-aoti variant")


def test_output_dtype_mismatch(workdir):
    _fails(workdir, linear_model(outputs=[{"name": "y", "dtype": "float16", "shape": [3]}]),
           "models[0].outputs[0].dtype: declared float16 but the model returns float32")


def test_export_failure_names_the_operator(workdir):
    msg = _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:unexportable"}), "ONNX export failed")
    assert "tritongen_test::mystery" in msg or "tritongen_test.mystery" in msg


def test_unknown_variant_option(workdir):
    # refused when the spec is read (generator/spec/options.py), before anything is built
    with pytest.raises(UserError) as e:
        load_spec(write_spec(workdir, {"models": [linear_model(variants=[{"name": "torchscript",
                                                                          "options": {"colour": 1}}])]}))
    assert "models[0].variants[0].options.colour: unknown option for torchscript; allowed: method, freeze" in str(e.value)
    assert not (workdir / "model_repository").exists()


def test_failed_build_leaves_previous_repository_intact(workdir):
    spec = load_spec(write_spec(workdir, {"models": [linear_model()]}))
    out = workdir / "model_repository"
    build(spec, out, workdir / "build")
    before = sorted(str(p.relative_to(out)) for p in out.rglob("*"))
    spec = load_spec(write_spec(workdir, {"models": [linear_model(), linear_model(
        name="broken", source={"factory": "tinymodels.tiny:two_outputs"})]}))
    with pytest.raises(UserError):
        build(spec, out, workdir / "build")
    assert sorted(str(p.relative_to(out)) for p in out.rglob("*")) == before


def test_cli_prints_one_line_and_exits_1_without_traceback(workdir):
    p = write_spec(workdir, {"models": [linear_model(source={"factory": "nosuchpkg.models:make"})]})
    r = subprocess.run([sys.executable, "-m", "generator.cli", "build", str(p), "-o", str(workdir / "out"),
                        "--build-dir", str(workdir / "build")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr + r.stdout
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: models[0].source.factory: cannot import module")
    assert not (workdir / "out").exists()


def test_a_model_answering_nan_is_refused_not_verified(workdir):
    """Every variant answering NaN like PyTorch would pass the gate: PyTorch's own NaN is the user's to fix."""
    _fails(workdir, linear_model(source={"factory": "tinymodels.tiny:nan_linear"}),
           "models[0].outputs[0] 'y': PyTorch's own forward() gives 1 NaN value(s) of 3 at batch=1")


def _cli_build(workdir, spec, out, *extra):
    return subprocess.run([sys.executable, "-m", "generator.cli", "build", str(spec), "-o", str(out),
                           "--build-dir", str(workdir / "build"), *extra], capture_output=True, text=True, timeout=300)


def test_an_output_that_is_not_a_repository_is_never_replaced(workdir):
    spec = write_spec(workdir, {"models": [linear_model()]})
    mine = workdir / "mydata"
    (mine / "sub").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    a_file = workdir / "outfile"
    a_file.write_text("mine too")
    for out, what in ((mine, "holds 'notes.txt', which is not a model folder"), (a_file, "is a file, not a folder"),
                      (workdir / "outfile" / "repo", "outfile is a file")):
        r = _cli_build(workdir, spec, out)
        assert r.returncode == 1 and what in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert (mine / "notes.txt").read_text() == "mine" and a_file.read_text() == "mine too"
    r = _cli_build(workdir, spec, workdir / "repo", "--build-dir", str(workdir / "repo" / "cache"))
    assert r.returncode == 1 and "inside -o" in r.stderr, r.stderr


def test_what_the_user_keeps_beside_the_models_survives_a_rebuild(workdir):
    """A repository kept in git (or DVC): the build swaps the whole folder, and .git, .gitattributes and the
    README come along; a model folder the spec no longer has goes."""
    spec = write_spec(workdir, {"models": [linear_model()]})
    out = workdir / "repo"
    assert _cli_build(workdir, spec, out).returncode == 0
    (out / ".git" / "objects").mkdir(parents=True)
    (out / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (out / ".gitattributes").write_text("*.onnx filter=lfs\n")
    (out / "README.md").write_text("our models\n")
    spec = write_spec(workdir, {"models": [linear_model(name="lin2")]})
    r = _cli_build(workdir, spec, out)
    assert r.returncode == 0, r.stderr
    assert (out / ".git" / "HEAD").read_text() == "ref: refs/heads/main\n" and (out / ".git" / "objects").is_dir()
    assert (out / ".gitattributes").read_text() == "*.onnx filter=lfs\n" and (out / "README.md").read_text() == "our models\n"
    assert (out / "lin2__onnx" / "config.pbtxt").is_file() and not (out / "lin__onnx").exists()


def test_brackets_in_a_message_are_printed_as_they_are(workdir):
    """The CLI prints with rich: '[/red]' or 'dims: {h: [min, opt, max]}' in a message is text, not markup."""
    spec = write_spec(workdir, {"models": [linear_model(source={"factory": "tinymodels.tiny:raising_with_brackets"})]})
    r = _cli_build(workdir, spec, workdir / "out")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    assert "bad config [/red] in [bold]layer[/bold]" in r.stderr
    spec = write_spec(workdir, {"models": [linear_model(inputs=[{"name": "x", "dtype": "float32", "shape": ["n"]}])]})
    r = _cli_build(workdir, spec, workdir / "out")
    assert "add it under dims: {n: [min, opt, max]}" in r.stderr, r.stderr
