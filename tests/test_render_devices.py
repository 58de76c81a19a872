"""Device-aware configs and native-backend settings from the spec: rendered, then parsed back with Triton's own
schema (model_config_pb2) and compared; impossible requests are one-line UserErrors."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from specs import vit_model
from tritonclient.grpc import model_config_pb2 as pb

from generator.errors import UserError
from generator.config.render import config_context, render, template_for
from generator.serve.runtimes import settings_from_parameters
from generator.spec import parse_spec
from generator.variants import REGISTRY


def model_of(**over):
    return parse_spec({"models": [vit_model(**over)]}, Path("/tmp/spec.yaml")).models[0]


def rendered(model, variant: str, target: str = "triton", release: str | None = None, **options):
    v = REGISTRY[variant]
    vs = next((s for s in model.variants if s.name == variant), None)
    if vs is None or options:
        from generator.spec import VariantSpec

        vs = VariantSpec(name=variant, options=options)
    ctx = config_context(model, v, vs, target=target, release=release)
    cfg = text_format.Parse(render(ctx, template_for(v, target)), pb.ModelConfig())
    return cfg, ctx


def kinds(cfg):
    return [(g.count, pb.ModelInstanceGroup.Kind.Name(g.kind)) for g in cfg.instance_group]


CPU2 = {"instance_group": [{"count": 2, "kind": "KIND_CPU"}]}
MIXED = {"instance_group": [{"count": 2, "kind": "KIND_CPU"}, {"count": 1, "kind": "KIND_GPU"}]}


def test_gpu_variant_gets_gpu_instances_derived_from_the_spec_count():
    cfg, ctx = rendered(model_of(triton=CPU2), "onnx-fp16")
    assert kinds(cfg) == [(2, "KIND_GPU")]
    assert any("runs on GPU only" in n for n in ctx["notes"])


def test_cpu_only_variant_drops_gpu_groups_and_gpu_variant_keeps_them():
    m = model_of(triton=MIXED)
    assert kinds(rendered(m, "openvino")[0]) == [(2, "KIND_CPU")]
    assert kinds(rendered(m, "onnx-fp16")[0]) == [(1, "KIND_GPU")]
    assert kinds(rendered(m, "onnx")[0]) == [(2, "KIND_CPU"), (1, "KIND_GPU")]


def test_openvino_under_only_gpu_instances_is_a_user_error():
    m = model_of(triton={"instance_group": [{"count": 1, "kind": "KIND_GPU"}]})
    with pytest.raises(UserError, match=r"models\[0\]\.triton\.instance_group: only KIND_GPU groups, but variant "
                                        r"'openvino' runs on CPU only"):
        rendered(m, "openvino")


def test_gpu_accelerator_with_only_cpu_instances_is_a_user_error():
    with pytest.raises(UserError, match=r"options\.trt_accelerator: a GPU accelerator applies only under KIND_GPU"):
        rendered(model_of(triton=CPU2), "onnx", trt_accelerator={"precision": "fp16"})


def test_gpu_accelerator_is_rendered_under_the_gpu_group_only():
    cfg, _ = rendered(model_of(triton=MIXED), "onnx", trt_accelerator={"precision": "fp16"})
    assert kinds(cfg) == [(1, "KIND_GPU")]
    acc = cfg.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert acc.name == "tensorrt" and acc.parameters["precision_mode"] == "FP16"


def test_embedded_target_serves_gpu_variants_on_cpu_and_says_so():
    cfg, ctx = rendered(model_of(triton=MIXED), "onnx-fp16", target="embedded")
    assert kinds(cfg) == [(2, "KIND_CPU")]
    assert any("GPU variant" in n for n in ctx["notes"]) and any("no GPU" in n for n in ctx["notes"])


BACKEND = {"onnxruntime": {"intra_op_thread_count": 2, "inter_op_thread_count": 1, "execution_mode": "parallel",
                           "enable_mem_arena": False, "graph_level": "basic"},
           "openvino": {"NUM_STREAMS": 2, "PERFORMANCE_HINT": "throughput", "INFERENCE_NUM_THREADS": 1,
                        "RESHAPE_IO_LAYERS": True},
           "pytorch": {"INFERENCE_MODE": False, "DISABLE_OPTIMIZED_EXECUTION": True, "INTER_OP_THREAD_COUNT": 1}}


def test_backend_settings_are_rendered_with_the_backends_own_names_and_values():
    m = model_of(triton={**CPU2, "backend": BACKEND, "intra_op_threads": 3})
    ort, _ = rendered(m, "onnx")
    p = {k: v.string_value for k, v in ort.parameters.items()}
    assert p == {"intra_op_thread_count": "2", "inter_op_thread_count": "1", "execution_mode": "1", "enable_mem_arena": "0"}
    assert ort.optimization.graph.level == -1  # basic, as onnxruntime_backend reads it
    ov, _ = rendered(m, "openvino")
    p = {k: v.string_value for k, v in ov.parameters.items()}
    assert (p["NUM_STREAMS"], p["PERFORMANCE_HINT"], p["INFERENCE_NUM_THREADS"], p["RESHAPE_IO_LAYERS"]) == ("2", "THROUGHPUT", "1", "YES")
    pt, _ = rendered(m, "torchscript")
    p = {k: v.string_value for k, v in pt.parameters.items()}
    assert p == {"INFERENCE_MODE": "false", "DISABLE_OPTIMIZED_EXECUTION": "true", "INTER_OP_THREAD_COUNT": "1",
                 "INTRA_OP_THREAD_COUNT": "3"}  # intra_op_threads fills the backend's own thread key


def test_openvino_instances_share_one_compiled_model_so_threads_and_streams_are_the_models():
    """openvino_backend compiles once per model and gives each instance an infer request on it: 2 instances of 1
    thread are INFERENCE_NUM_THREADS 2 with a stream each (with NUM_STREAMS 1 only one instance would compute)."""
    ov, ctx = rendered(model_of(triton={**CPU2, "intra_op_threads": 1}), "openvino")
    p = {k: v.string_value for k, v in ov.parameters.items()}
    assert (p["INFERENCE_NUM_THREADS"], p["NUM_STREAMS"]) == ("2", "2")
    assert not any("NUM_STREAMS" in n for n in ctx["notes"])
    one, ctx = rendered(model_of(triton={**CPU2, "intra_op_threads": 1, "backend": {"openvino": {"NUM_STREAMS": 1}}}),
                        "openvino-int8")
    p = {k: v.string_value for k, v in one.parameters.items()}
    assert (p["INFERENCE_NUM_THREADS"], p["NUM_STREAMS"]) == ("2", "1")  # the spec's word stands, with a note
    assert any("only 1 instance(s) compute at a time" in n for n in ctx["notes"])
    single, _ = rendered(model_of(triton={"instance_group": [{"count": 1, "kind": "KIND_CPU"}], "intra_op_threads": 2}),
                         "openvino")
    p = {k: v.string_value for k, v in single.parameters.items()}
    assert p["INFERENCE_NUM_THREADS"] == "2" and not p.get("NUM_STREAMS")  # "": the backend's default
    twin, _ = rendered(model_of(triton={**CPU2, "intra_op_threads": 1}), "openvino", target="embedded")
    p = {k: v.string_value for k, v in twin.parameters.items()}
    assert (p["INFERENCE_NUM_THREADS"], p["NUM_STREAMS"]) == ("2", "2")  # the twin divides them per instance


@pytest.mark.parametrize("variant,runtime", [("onnx", "onnxruntime"), ("onnx-fp16", "onnxruntime"),
                                             ("openvino", "openvino"), ("torchscript", "torchscript")])
def test_twin_reads_the_same_settings_as_the_native_backend(variant, runtime):
    m = model_of(triton={**CPU2, "backend": BACKEND})
    native, _ = rendered(m, variant, release="24.10")  # the release the embedded twin mimics (generator/tables/releases.py)
    twin, _ = rendered(m, variant, target="embedded")
    level = native.optimization.graph.level if native.optimization.HasField("graph") else None
    from_native = settings_from_parameters(runtime, {k: v.string_value for k, v in native.parameters.items()}, level)
    from_twin = settings_from_parameters(runtime, {k: v.string_value for k, v in twin.parameters.items()})
    assert from_twin == from_native


def test_bad_backend_settings_name_the_field():
    with pytest.raises(UserError, match=r"triton\.backend\.openvino\.PERFORMANCE_HINT: 'FAST' is not one of"):
        model_of(triton={"backend": {"openvino": {"PERFORMANCE_HINT": "fast"}}})
    with pytest.raises(UserError, match=r"triton\.backend\.openvino\.num_streams"):
        model_of(triton={"backend": {"openvino": {"num_streams": 2}}})
    with pytest.raises(UserError, match=r"triton\.backend\.onnxruntime\.graph_level: 'max' is not one of"):
        model_of(triton={"backend": {"onnxruntime": {"graph_level": "max"}}})


def test_scheduling_cache_and_rate_limiter_are_rendered():
    m = model_of(triton={
        **CPU2, "response_cache": True,
        "rate_limiter": {"resources": [{"name": "R1", "count": 2, "global": True}], "priority": 1},
        "dynamic_batching": {"preferred_batch_size": [2, 4], "max_queue_delay_microseconds": 100, "priority_levels": 2,
                             "default_priority_level": 2,
                             "default_queue_policy": {"timeout_action": "DELAY", "default_timeout_microseconds": 5000,
                                                      "max_queue_size": 16},
                             "priority_queue_policy": {1: {"timeout_action": "REJECT", "max_queue_size": 4}}}})
    for target in ("triton", "embedded"):
        cfg, _ = rendered(m, "onnx", target=target)
        db = cfg.dynamic_batching
        assert (db.priority_levels, db.default_priority_level) == (2, 2)
        assert db.default_queue_policy.timeout_action == pb.ModelQueuePolicy.DELAY
        assert db.default_queue_policy.default_timeout_microseconds == 5000
        assert db.priority_queue_policy[1].max_queue_size == 4
        assert cfg.response_cache.enable
        rl = cfg.instance_group[0].rate_limiter
        assert (rl.resources[0].name, rl.resources[0].count, getattr(rl.resources[0], "global"), rl.priority) == ("R1", 2, True, 1)


def test_default_priority_level_must_be_within_priority_levels():
    with pytest.raises(UserError, match=r"default_priority_level: 3 is not in 1\.\.2"):
        model_of(triton={"dynamic_batching": {"priority_levels": 2, "default_priority_level": 3}})
