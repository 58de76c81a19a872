"""Rules on the config and the folder: instance kinds, accelerators, graph level, parameters, model files,
warm-up samples, versions."""

from __future__ import annotations

from generator.tables import backends as B
from generator.formats.onnxfile import onnx_external_files
from generator.config.rules.framework import CPU_ACCELERATORS, GPU_ACCELERATORS, PARAM_SOURCE, TRT_EA_PARAMETERS, BACKEND_PARAMETERS, Target, _dtype_name, check_parameter, problem, rule, unknown_parameter, warning


@rule("instance-kind", ("openvino", "tensorrt", "*"), "devices", "instance kinds where the backend and the variant can run")
def check_instance_kind(t: Target):
    kinds = t.instance_kinds()
    if t.engine == "openvino" and "KIND_GPU" in kinds:
        yield problem(f"{t.where}: instance_group kind KIND_GPU: the openvino backend runs on CPU only; use KIND_CPU",
                      "ov_device")
    if t.engine == "tensorrt" and "KIND_CPU" in kinds:
        yield problem(f"{t.where}: instance_group kind KIND_CPU: a TensorRT plan runs on GPU only; use KIND_GPU", "trt_device")
    man = t.manifest or {}
    devices = man.get("devices")
    if devices and kinds and man.get("target", "triton") == "triton":
        wanted = {"cpu": "KIND_CPU", "gpu": "KIND_GPU"}
        ok = {wanted[d] for d in devices if d in wanted}
        if not any(k in ok | {"KIND_AUTO", "KIND_MODEL"} for k in kinds):
            yield problem(f"{t.where}: instance_group kinds {sorted(set(kinds))} but variant '{man.get('variant')}' runs on "
                          f"{'/'.join(devices)}; use {' or '.join(sorted(ok))}")


def _accelerators(t: Target):
    ea = t.cfg.optimization.execution_accelerators
    return list(ea.gpu_execution_accelerator), list(ea.cpu_execution_accelerator)


@rule("gpu-accelerator-kind", ("onnxruntime",), "ort_gpu_ea", "GPU execution accelerators need a KIND_GPU (or KIND_AUTO) instance")
def check_gpu_accelerator_kind(t: Target):
    if t.engine != "onnxruntime":
        return
    gpu, _ = _accelerators(t)
    kinds = t.instance_kinds()
    if gpu and kinds and not ({"KIND_GPU", "KIND_AUTO"} & set(kinds)):
        yield problem(f"{t.where}: gpu_execution_accelerator '{gpu[0].name}' under KIND_CPU instances only never applies; "
                      "add a KIND_GPU instance_group or remove the accelerator")


@rule("accelerators", ("onnxruntime",), "ort_ea", "accelerator names and TensorRT accelerator parameters the backend knows")
def check_accelerators(t: Target):
    if t.engine != "onnxruntime":
        return
    gpu, cpu = _accelerators(t)
    for a in gpu:
        if a.name not in GPU_ACCELERATORS:
            yield problem(f"{t.where}: gpu_execution_accelerator '{a.name}' is unknown to the onnxruntime backend; use one of "
                          f"{', '.join(GPU_ACCELERATORS)}")
        elif a.name == "tensorrt":
            for k, v in a.parameters.items():
                if k not in TRT_EA_PARAMETERS:
                    yield problem(f"{t.where}: tensorrt accelerator parameter '{k}' is unknown (the backend refuses to load); "
                                  "remove it")
                elif why := TRT_EA_PARAMETERS[k](v):
                    yield problem(f"{t.where}: tensorrt accelerator parameter {k}: {why}")
    for a in cpu:
        if a.name not in CPU_ACCELERATORS:
            yield problem(f"{t.where}: cpu_execution_accelerator '{a.name}' is unknown to the onnxruntime backend; use "
                          f"{', '.join(CPU_ACCELERATORS)}")


@rule("ort-graph-level", ("onnxruntime",), "ort_level", "optimization.graph.level is -1, 1 or 2 (0/absent = all)")
def check_ort_graph_level(t: Target):
    if t.engine != "onnxruntime" or not t.cfg.optimization.HasField("graph"):
        return
    level = t.cfg.optimization.graph.level
    if level not in (-1, 0, 1, 2):
        yield problem(f"{t.where}: optimization.graph.level {level} is not one the backend reads (it falls back to "
                      "ORT_ENABLE_ALL); use -1 (basic), 1 (extended), 2 (disable all) or remove it")


@rule("backend-parameters", ("onnxruntime", "openvino", "pytorch"), "ort_params",
      "parameter names the native backend reads, with valid values")
def check_backend_parameters(t: Target):
    if t.engine not in BACKEND_PARAMETERS:
        return
    for k, v in t.params.items():
        why = check_parameter(t.engine, k, v)
        if why:
            yield problem(f"{t.where}: {why}", PARAM_SOURCE[t.engine])
        elif note := unknown_parameter(t.engine, k):
            yield warning(f"{t.where}: {note}", PARAM_SOURCE[t.engine])


@rule("openvino-streams", ("openvino",), "ov_shared",
      "instances share one compiled model: NUM_STREAMS and INFERENCE_NUM_THREADS at least the instance count")
def check_openvino_streams(t: Target):
    if t.engine != "openvino":
        return
    n = sum(max(1, g.count) for g in t.cfg.instance_group) if t.cfg.instance_group else 1
    if n <= 1:
        return
    for key, what in (("NUM_STREAMS", "stream(s)"), ("INFERENCE_NUM_THREADS", "thread(s)")):
        v = str(t.params.get(key, "")).strip()
        if v.isdigit() and 0 < int(v) < n:
            yield warning(f"{t.where}: {n} instances share one compiled model with {key} {v}: the backend compiles the "
                          f"model once and gives each instance an infer request on it, so only {v} {what} serve {n} "
                          f"instances; set {key} to {n} or more (tritongen renders one stream per instance)")


# the model files each backend the model-files rule concerns loads (default_model_filename)
EXTS = {name: B.get(name).extensions for name in ("onnxruntime", "pytorch", "tensorrt", "openvino")}
OV_EXTS = EXTS["openvino"]


@rule("model-files", ("onnxruntime", "openvino", "pytorch", "tensorrt"), "ort_file",
      "default_model_filename fits the backend; ONNX external data and the IR's .bin sit beside the model file")
def check_model_files(t: Target):
    name = t.artifact_name()
    if not name:
        return
    exts = EXTS.get(t.engine)
    if exts and not name.endswith(exts):
        yield problem(f"{t.where}: default_model_filename '{name}' is not a {'/'.join(exts)} file the {t.engine} backend "
                      "loads; rename it", "ov_file" if t.engine == "openvino" else None)
    for path in t.artifacts():
        if path.suffix == ".onnx":
            try:
                locations = onnx_external_files(path)
            except Exception:
                continue  # unreadable: io-match reports it
            for loc in locations:
                if not (path.parent / loc).is_file():
                    yield problem(f"{t.at(path)}: external data file '{loc}' is missing beside it; copy it into "
                                  f"{t.name}/{path.parent.name}/ or save the model with its weights inline")
        elif path.suffix == ".xml" and not path.with_suffix(".bin").is_file():
            yield problem(f"{t.at(path)}: {path.with_suffix('.bin').name} is missing beside it; copy the IR's weights file",
                          "ov_file")


FLOAT_TYPES = ("TYPE_FP32", "TYPE_FP16", "TYPE_FP64", "TYPE_BF16")


@rule("warmup-inputs", ("*",), "core_warmup", "warm-up samples give every input, at its dtype, dims and a safe value range")
def check_warmup(t: Target):
    inputs = {i.name: i for i in t.cfg.input}
    for w in t.cfg.model_warmup:
        missing = [n for n in inputs if n not in w.inputs]
        if missing:
            yield problem(f"{t.where}: model_warmup '{w.name}' gives no value for input '{missing[0]}'; add it")
        for key, v in w.inputs.items():
            spec = inputs.get(key)
            if spec is None or any(d < 0 for d in v.dims):
                continue  # reported by validate.check_config
            if len(v.dims) != len(spec.dims) or any(cd not in (-1, wd) for cd, wd in zip(spec.dims, v.dims)):
                yield problem(f"{t.where}: model_warmup '{w.name}' input '{key}' dims {list(v.dims)} do not fit the declared "
                              f"dims {list(spec.dims)}; use the declared sizes (any size for -1)")
            dt = _dtype_name(v.data_type)
            if v.WhichOneof("input_data_type") == "random_data" and dt not in FLOAT_TYPES:
                yield problem(f"{t.where}: model_warmup '{w.name}' input '{key}' ({dt}) uses random_data: arbitrary integers "
                              "can index out of range (token ids) and fail the load; use zero_data or an input_data_file")


@rule("version-policy", ("*",), "core_versions", "version folders exist for the version_policy")
def check_versions(t: Target):
    vp = t.cfg.version_policy
    which = vp.WhichOneof("policy_choice")
    have = set(t.versions)
    if which == "specific":
        missing = [v for v in vp.specific.versions if v not in have]
        if missing:
            yield problem(f"{t.where}: version_policy specific {list(vp.specific.versions)} but folder {missing[0]}/ does not "
                          f"exist (there are {sorted(have) or 'none'}); add it or change the policy")
    elif which == "latest" and vp.latest.num_versions > len(have):
        yield warning(f"{t.where}: version_policy latest {vp.latest.num_versions} but only {len(have)} version folder(s)")
    if 0 in have:
        yield problem(f"{t.name}/0: version folder 0/ is never loaded (versions are positive integers); rename it 1/")
