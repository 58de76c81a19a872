"""tune's ``tuned.yaml`` is a spec snippet users paste into their spec: it holds only keys the spec reader
accepts, and a rebuild with it renders exactly the winner's values (the same config ``--apply`` writes),
the ensemble feeding the winner's variant; the spec's KIND_GPU groups stay KIND_GPU."""

from __future__ import annotations

import shutil

import pytest
import yaml
from google.protobuf import text_format
from specs import vit_model, write_spec
from tritonclient.grpc import model_config_pb2 as pb

from generator.errors import UserError
from generator.build.pipeline import build
from generator.spec import MODEL_KEYS, load_spec, parse_spec
from perf import tune
from perf.harness import discover

pytestmark = pytest.mark.slow

THREAD_KEYS = ("intra_op_threads", "intra_op_thread_count", "INTRA_OP_THREAD_COUNT", "INFERENCE_NUM_THREADS")


def _cfg(path):
    return text_format.Parse(path.read_text(), pb.ModelConfig())


def _served_values(cfg) -> dict:
    """What tune searches, as the config holds it."""
    db = cfg.dynamic_batching if cfg.HasField("dynamic_batching") else None
    return {"max_batch_size": cfg.max_batch_size,
            "instance_group": [(g.count, g.kind) for g in cfg.instance_group],
            "dynamic_batching": (list(db.preferred_batch_size), db.max_queue_delay_microseconds) if db else None,
            "threads": {k: cfg.parameters[k].string_value for k in THREAD_KEYS if k in cfg.parameters}}


@pytest.fixture(scope="module")
def tuned(tmp_path_factory):
    d = tmp_path_factory.mktemp("tuned")
    m = vit_model(variants=["onnx", "torchscript"],
                  preprocess={"image": {"size": [32, 32]}, "variant": "onnx"},
                  triton={"dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 100,
                                               "preserve_ordering": True},
                          "instance_group": [{"count": 2, "kind": "KIND_CPU"}, {"count": 1, "kind": "KIND_GPU"}],
                          "intra_op_threads": 1})
    spec_path = write_spec(d, {"models": [m]})
    spec = load_spec(spec_path)
    build(spec, d / "repo", d / "build", target="embedded")
    target = next(t for t in discover(d / "repo") if t.name == "vit__torchscript")
    target.dir = d / "repo" / target.name
    # the winner tune would name: another variant than the spec's ensemble, other settings on every axis
    win = tune.Candidate("vit__torchscript", instances=1, max_batch_size=2, preferred=(1, 2), queue_delay_us=500,
                         threads=2)
    out = d / "run"
    out.mkdir()
    tune.write_tuned(out, spec_path, [tune.spec_snippet(spec.model("vit"), "torchscript", win)])
    return {"dir": d, "spec_path": spec_path, "spec": spec, "win": win, "out": out,
            "applied": tune.apply_candidate(tune.base_config(target), win)}


def test_tuned_yaml_holds_only_keys_the_spec_reader_accepts(tuned):
    snippet = yaml.safe_load((tuned["out"] / "tuned.yaml").read_text())["models"][0]
    assert set(snippet) <= set(MODEL_KEYS)
    assert snippet["preferred_variant"] == "torchscript"
    # pasted into the spec, it parses: the measured CPU group holds the winner's count, the GPU group stays
    data = yaml.safe_load(tuned["spec_path"].read_text())
    merged = tune.merge_snippets(data, [snippet])
    ms = parse_spec(merged, tuned["spec_path"]).model("vit")
    assert ms.preferred_variant == "torchscript" and ms.max_batch_size == 2
    assert [(g.count, g.kind) for g in ms.triton.instance_group] == [(1, "KIND_CPU"), (1, "KIND_GPU")]
    assert ms.triton.dynamic_batching.preferred_batch_size == (1, 2)
    assert ms.triton.dynamic_batching.max_queue_delay_microseconds == 500
    assert ms.triton.dynamic_batching.preserve_ordering  # the spec's other batching keys are kept
    assert ms.triton.intra_op_threads == 2


def test_a_rebuild_with_tuned_yaml_renders_the_winners_config_and_ensemble(tuned):
    d = tuned["dir"]
    again = d / "tuned-spec.yaml"  # beside the spec, as the header says: relative paths resolve
    shutil.copy(tuned["out"] / "tuned-spec.yaml", again)
    spec = load_spec(again)
    build(spec, d / "repo2", d / "build", target="embedded")
    cfg = _cfg(d / "repo2" / "vit__torchscript" / "config.pbtxt")
    assert _served_values(cfg) == _served_values(tuned["applied"])  # exactly what tune measured / --apply writes
    ens = _cfg(d / "repo2" / "vit__ensemble" / "config.pbtxt")
    assert [s.model_name for s in ens.ensemble_scheduling.step] == ["vit__preprocess", "vit__torchscript"]
    # the native repository keeps the spec's GPU group as KIND_GPU beside the tuned CPU group
    build(spec, d / "native", d / "build", target="triton")
    native = _cfg(d / "native" / "vit__torchscript" / "config.pbtxt")
    assert [(g.count, g.kind) for g in native.instance_group] == [
        (1, pb.ModelInstanceGroup.KIND_CPU), (1, pb.ModelInstanceGroup.KIND_GPU)]
    assert native.max_batch_size == 2 and native.parameters["INTRA_OP_THREAD_COUNT"].string_value == "2"


def test_preferred_variant_must_be_one_of_the_models_variants():
    m = vit_model(preferred_variant="torchscript")
    with pytest.raises(UserError, match=r"models\[0\]\.preferred_variant: 'torchscript' is not in this model's "
                                        r"variants \(onnx\)"):
        parse_spec({"models": [m]}, __import__("pathlib").Path("/tmp/spec.yaml"))


def test_only_gpu_groups_are_left_as_the_spec_has_them():
    m = parse_spec({"models": [vit_model(triton={"instance_group": [{"count": 3, "kind": "KIND_GPU"}]})]},
                   __import__("pathlib").Path("/tmp/spec.yaml")).model("vit")
    c = tune.Candidate("vit__onnx", instances=1, max_batch_size=4, preferred=(2, 4), queue_delay_us=0, threads=1)
    assert tune.spec_snippet(m, "onnx", c)["triton"]["instance_group"] == [{"count": 3, "kind": "KIND_GPU"}]
    no_groups = parse_spec({"models": [vit_model()]}, __import__("pathlib").Path("/tmp/spec.yaml")).model("vit")
    assert tune.spec_snippet(no_groups, "onnx", c)["triton"]["instance_group"] == [{"count": 1, "kind": "KIND_CPU"}]
