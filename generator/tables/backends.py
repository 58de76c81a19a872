"""The backend table: each Triton backend tritongen writes configs for, described once.

What a config names (``platform`` / ``backend``), the model file Triton loads by default and the extensions
it accepts, the child template, the runtime tritongen verifies and twins it with (``generator/serve/runtimes.py``),
the parameter holding per-instance threads, the config ``parameters`` the backend reads (with a check for
each value), which of those the spec may set and which the twin reproduces, where it runs, and the places
in the backend's documentation or source each fact comes from.

Read by variants (``Variant(backend="onnxruntime")``), rendering (generator/config/render.py), validation
(generator/config/validate.py, generator/config/rules/), the runtime layer and the twin (generator/serve/runtimes.py),
the spec reader and perf/.

Pure data and small lookups; standalone (nothing from ``generator``, nothing heavy): the build copies this
file beside the twin's ``model.py`` as ``tritongen_backends.py`` together with ``tritongen_runtimes.py``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

Check = Callable[[str], "str | None"]  # a parameter value -> why it is wrong, or None


# ------------------------------------------------------------------------------------------ value checks


def int_check(minimum: int = 0, maximum: int | None = None) -> Check:
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return f"'{v}' is not an integer"
        if n < minimum or (maximum is not None and n > maximum):
            return f"{n} is out of range [{minimum}, {maximum if maximum is not None else '...'}]"
        return None

    return check


def choice_check(*values: str, case: bool = True) -> Check:
    def check(v: str) -> str | None:
        ok = v in values if case else v.upper() in [x.upper() for x in values]
        return None if ok else f"'{v}' is not one of {', '.join(values)}"

    return check


def bool_check(v: str) -> str | None:
    # triton backend_common ParseBoolValue
    return None if v.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off") else f"'{v}' is not a boolean (true/false)"


def any_value(v: str) -> str | None:
    return None


def streams_check(v: str) -> str | None:
    if v.upper() in ("AUTO", "NUMA"):
        return None
    return int_check(1)(v) and f"'{v}' is not AUTO, NUMA or a positive integer"


_int, _choice, _bool, _any = int_check, choice_check, bool_check, any_value


# ----------------------------------------------------------------------------------------------- entries


@dataclass(frozen=True)
class Backend:
    name: str  # how rules, ``triton.backend.<name>`` and variants call it
    platform: str | None  # config ``platform`` tritongen writes (None: none)
    config_backend: str | None  # config ``backend`` tritongen writes (None: none)
    files: Mapping[str, str]  # config platform/backend value -> Triton's default model file name
    extensions: tuple[str, ...] = ()  # model files the backend loads (``default_model_filename``)
    template: str | None = None  # child template in templates/
    runtime: str | None = None  # tritongen's runtime for its artifacts: verification, twin (runtimes.py), perf
    thread_key: str | None = None  # the config parameter holding per-instance runtime threads
    parameters: Mapping[str, Check] = field(default_factory=dict)  # the parameters it reads (case-sensitive)
    spec_settings: tuple[str, ...] = ()  # what ``triton.backend.<name>`` may set in a spec
    twin_keys: tuple[str, ...] = ()  # parameters the twin's session reproduces (empty: no twin)
    devices: tuple[str, ...] = ()  # "cpu", "gpu": where it runs
    src_prefix: str | None = None  # ``<prefix>_<role>``: the rules' source ids (generator/config/rules)
    sources: Mapping[str, str] = field(default_factory=dict)  # role -> where in its docs/source a fact is from

    @property
    def config_names(self) -> tuple[str, ...]:
        """Every config ``platform`` / ``backend`` value that means this backend."""
        return tuple(dict.fromkeys([self.name, *self.files, *(n for n in (self.platform, self.config_backend) if n)]))

    @property
    def config_name(self) -> str:
        """What the config names: its platform, else its backend."""
        return self.platform or self.config_backend or self.name

    @property
    def default_file(self) -> str | None:
        return self.files.get(self.config_name) or self.files.get(self.name)

    def file_for(self, platform: str | None = None) -> str | None:
        """The default model file for ``platform`` (e.g. a second platform of the same backend), else the default."""
        return self.files.get(platform) if platform in self.files else self.default_file


ORT = "onnxruntime_backend"
OV = "openvino_backend"
PT = "pytorch_backend"

ONNXRUNTIME = Backend(
    name="onnxruntime", platform="onnxruntime_onnx", config_backend=None,
    files={"onnxruntime_onnx": "model.onnx", "onnxruntime": "model.onnx"}, extensions=(".onnx",),
    template="onnxruntime.pbtxt.j2", runtime="onnxruntime", thread_key="intra_op_thread_count",
    parameters={
        "intra_op_thread_count": _int(0), "inter_op_thread_count": _int(0), "execution_mode": _choice("0", "1"),
        "enable_mem_arena": _bool, "enable_mem_pattern": _bool, "memory.enable_memory_arena_shrinkage": _any,
        "session.use_device_allocator_for_initializers": _any, "share_session_between_instances": _bool,
        "cudnn_conv_algo_search": _choice("0", "1", "2"), "gpu_mem_limit": _int(0), "arena_extend_strategy": _choice("0", "1"),
        "do_copy_in_default_stream": _bool,
    },
    spec_settings=("intra_op_thread_count", "inter_op_thread_count", "execution_mode", "enable_mem_arena",
                   "enable_mem_pattern", "graph_level"),
    twin_keys=("intra_op_thread_count", "inter_op_thread_count", "execution_mode", "enable_mem_arena", "enable_mem_pattern"),
    devices=("cpu", "gpu"), src_prefix="ort",
    sources={
        "params": f"{ORT} src/onnxruntime.cc ModelState (parameters; README 'Model Config Options')",
        "level": f"{ORT} src/onnxruntime.cc: optimization.graph.level -1=BASIC, 1=EXTENDED, 2=DISABLE_ALL, else ALL",
        "gpu_ea": f"{ORT} src/onnxruntime.cc LoadModel: GPU execution accelerators are added only for KIND_GPU/KIND_AUTO instances",
        "ea": f"{ORT} src/onnxruntime.cc: 'unknown Execution Accelerator', 'unknown parameter ... for TensorRT Execution Accelerator'",
        "io": f"{ORT} README/src: config inputs/outputs must match the ONNX graph's names, types and dims",
        "file": f"{ORT} src/onnxruntime.cc LoadModel: <version>/<default_model_filename or model.onnx>; external data is read beside it",
    },
)
# onnxruntime_backend src/onnxruntime.cc: optimization.graph.level -1 = BASIC, 1 = EXTENDED, 2 = DISABLE_ALL, else ALL
ORT_GRAPH_LEVELS = {"basic": -1, "extended": 1, "disable": 2, "all": 0}
ORT_GRAPH_LEVEL_ORDER = ("disable", "basic", "extended", "all")  # least to most optimised
ORT_GPU_ACCELERATORS = ("tensorrt", "cuda")
ORT_CPU_ACCELERATORS = ("openvino",)
# the TensorRT execution accelerator's parameters (onnxruntime_backend README "ONNX Runtime with TensorRT optimization")
ORT_TRT_ACCELERATOR_PARAMETERS: dict[str, Check] = {
    "precision_mode": _choice("FP32", "FP16", "INT8"), "max_workspace_size_bytes": _int(0),
    "trt_max_partition_iterations": _int(0), "trt_min_subgraph_size": _int(0), "int8_calibration_table_name": _any,
    "int8_use_native_calibration_table": _bool, "trt_dla_enable": _bool, "trt_dla_core": _int(0),
    "trt_engine_cache_enable": _bool, "trt_engine_cache_path": _any, "trt_engine_cache_prefix": _any,
    "trt_dump_subgraphs": _bool, "trt_force_sequential_engine_build": _bool, "trt_context_memory_sharing_enable": _bool,
    "trt_layer_norm_fp32_fallback": _bool, "trt_timing_cache_enable": _bool, "trt_timing_cache_path": _any,
    "trt_force_timing_cache": _bool, "trt_detailed_build_log": _bool, "trt_build_heuristics_enable": _bool,
    "trt_sparsity_enable": _bool, "trt_builder_optimization_level": _int(0), "trt_auxiliary_streams": _int(-1),
    "trt_tactic_sources": _any, "trt_extra_plugin_lib_paths": _any, "trt_profile_min_shapes": _any,
    "trt_profile_max_shapes": _any, "trt_profile_opt_shapes": _any, "trt_cuda_graph_enable": _bool,
    "trt_dump_ep_context_model": _bool, "trt_ep_context_file_path": _any, "trt_ep_context_embed_mode": _int(0),
}

OPENVINO = Backend(
    name="openvino", platform=None, config_backend="openvino",
    files={"openvino": "model.xml"}, extensions=(".xml", ".onnx", ".pdmodel", ".saved_model"),
    template="openvino.pbtxt.j2", runtime="openvino", thread_key="INFERENCE_NUM_THREADS",
    parameters={
        "PERFORMANCE_HINT": _choice("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT", case=False), "CPU_EXTENSION_PATH": _any,
        "INFERENCE_NUM_THREADS": _int(0), "COMPILATION_NUM_THREADS": _int(0), "HINT_BF16": _choice("YES", case=False),
        "NUM_STREAMS": streams_check, "SKIP_OV_DYNAMIC_BATCHSIZE": _choice("YES", "NO", case=False),
        "ENABLE_BATCH_PADDING": _choice("YES", "NO", case=False), "RESHAPE_IO_LAYERS": _choice("YES", "NO", case=False),
    },
    spec_settings=("NUM_STREAMS", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS",
                   "COMPILATION_NUM_THREADS"),
    twin_keys=("PERFORMANCE_HINT", "NUM_STREAMS", "INFERENCE_NUM_THREADS", "COMPILATION_NUM_THREADS", "HINT_BF16",
               "RESHAPE_IO_LAYERS", "ENABLE_BATCH_PADDING", "SKIP_OV_DYNAMIC_BATCHSIZE"),
    devices=("cpu",), src_prefix="ov",
    sources={
        "params": f"{OV} README 'Parameters'",
        "device": f"{OV} README 'Supported Devices': Intel CPU only",
        "io": f"{OV} README: inputs/outputs match the IR; 'Reshaping models' (RESHAPE_IO_LAYERS), ENABLE_BATCH_PADDING",
        "batch": f"{OV} src/openvino.cc: ov::set_batch(model, max_batch_size); 'expected requests with batch size N... ENABLE_BATCH_PADDING'",
        "shared": f"{OV} src/openvino.cc ModelInstanceState: LoadModel once per model (ModelNotLoaded), CreateInferRequest per instance",
        "file": f"{OV} README 'Loading non default model format': model.xml (+ model.bin), model.onnx, model.pdmodel, model.saved_model",
    },
)

# platform pytorch_libtorch (TorchScript model.pt); its pt2 loader (platform torch_aoti) is TORCH_AOTI below
PYTORCH = Backend(
    name="pytorch", platform="pytorch_libtorch", config_backend=None,
    files={"pytorch_libtorch": "model.pt", "pytorch": "model.pt"}, extensions=(".pt", ".pt2"),
    template="libtorch.pbtxt.j2", runtime="torchscript", thread_key="INTRA_OP_THREAD_COUNT",
    parameters={
        "DISABLE_OPTIMIZED_EXECUTION": _bool, "INFERENCE_MODE": _bool, "DISABLE_CUDNN": _bool,
        "ENABLE_WEIGHT_SHARING": _bool, "ENABLE_CACHE_CLEANING": _bool, "ENABLE_JIT_EXECUTOR": _bool,
        "ENABLE_JIT_PROFILING": _bool, "ENABLE_TENSOR_FUSER": _bool, "ENABLE_NVFUSER": _bool,
        "ENABLE_DETERMINISTIC_ALGORITHMS": _bool, "INTER_OP_THREAD_COUNT": _int(0), "INTRA_OP_THREAD_COUNT": _int(0),
        "NUM_THREADS": _int(0), "NUM_INTEROP_THREADS": _int(0), "TORCH_COMPILE_OPTIONAL_PARAMETERS": _any,
    },
    spec_settings=("INFERENCE_MODE", "DISABLE_OPTIMIZED_EXECUTION", "INTRA_OP_THREAD_COUNT", "INTER_OP_THREAD_COUNT",
                   "ENABLE_JIT_EXECUTOR", "ENABLE_JIT_PROFILING"),
    twin_keys=("INFERENCE_MODE", "DISABLE_OPTIMIZED_EXECUTION", "INTRA_OP_THREAD_COUNT", "INTER_OP_THREAD_COUNT",
               "ENABLE_JIT_EXECUTOR", "ENABLE_JIT_PROFILING", "DISABLE_CUDNN", "ENABLE_WEIGHT_SHARING", "ENABLE_CACHE_CLEANING"),
    devices=("cpu", "gpu"), src_prefix="pt",
    sources={
        "params": f"{PT} README 'Parameters'",
        "io": f"{PT} src/model_instance_state.cc GetNamingConvention/ValidateInputs: forward() argument names, else <name>__<index>, else config order",
        "dtype": f"{PT} src/libtorch_utils.cc ModelConfigDataTypeToTorchType",
    },
)

# platform torch_aoti: an AOTInductor package (model.pt2) served by the pytorch backend's pt2 loader, which reads its
# own parameter names (CACHE_CLEANING_ENABLED, not libtorch's ENABLE_CACHE_CLEANING)
PT2 = f"{PT} src/pt2"
TORCH_AOTI = Backend(
    name="torch_aoti", platform="torch_aoti", config_backend=None,
    files={"torch_aoti": "model.pt2"}, extensions=(".pt2",),
    template="torch_aoti.pbtxt.j2", runtime="aoti", thread_key="INTRA_OP_THREAD_COUNT",
    parameters={
        "DISABLE_OPTIMIZED_EXECUTION": _bool, "CACHE_CLEANING_ENABLED": _bool, "INFERENCE_MODE": _bool,
        "DISABLE_CUDNN": _bool, "ENABLE_WEIGHT_SHARING": _bool, "INTRA_OP_THREAD_COUNT": _int(0),
        "INTER_OP_THREAD_COUNT": _int(0),
    },
    twin_keys=("INFERENCE_MODE", "INTRA_OP_THREAD_COUNT", "INTER_OP_THREAD_COUNT", "DISABLE_OPTIMIZED_EXECUTION",
               "CACHE_CLEANING_ENABLED", "DISABLE_CUDNN", "ENABLE_WEIGHT_SHARING"),
    devices=("cpu", "gpu"), src_prefix="aoti",
    sources={
        "file": f"{PT2}/model_state.cc LoadModel: <version>/<default_model_filename or model.pt2>, "
                "AOTIModelPackageLoader(path, model name \"model\")",
        "device": f"{PT2}/model_instance_state.cc: KIND_GPU -> cuda:<device id>, else CPU (device_index -1)",
        "io": f"{PT2}/model_instance_state.cc ValidateInputs/ValidateOutputs + call_spec.cc",
        "params": f"{PT2}/model_state.cc ParseParameters",
    },
)

TENSORRT = Backend(
    name="tensorrt", platform="tensorrt_plan", config_backend=None,
    files={"tensorrt_plan": "model.plan", "tensorrt": "model.plan"}, extensions=(".plan",),
    template="tensorrt.pbtxt.j2", runtime="tensorrt", devices=("gpu",), src_prefix="trt",
    sources={"device": "tensorrt_backend: a plan runs on the GPU it was built for (KIND_GPU only)"},
)

# the python backend; tritongen's twin (``--target embedded``) is a python model running another backend's artifact,
# its threads in ``intra_op_threads``
PYTHON = Backend(
    name="python", platform=None, config_backend="python", files={"python": "model.py"},
    template="python.pbtxt.j2", thread_key="intra_op_threads", devices=("cpu", "gpu"),
)

ENSEMBLE = Backend(name="ensemble", platform="ensemble", config_backend=None, files={}, template="ensemble.pbtxt.j2")

BACKENDS: dict[str, Backend] = {b.name: b for b in (ONNXRUNTIME, OPENVINO, PYTORCH, TORCH_AOTI, TENSORRT, PYTHON,
                                                      ENSEMBLE)}
_BY_CONFIG_NAME = {n: b for b in BACKENDS.values() for n in b.config_names}
# what Triton itself knows beyond the table: the other backends the NGC server ships, and TensorFlow's platforms
# (core's platform -> backend map); a config naming none of these is a typo or a custom backend
OTHER_TRITON_BACKENDS = ("tensorflow", "fil", "dali", "identity", "repeat", "square", "vllm", "tensorrtllm")
TRITON_PLATFORMS = tuple(b.platform for b in BACKENDS.values() if b.platform) + ("tensorflow_graphdef",
                                                                                  "tensorflow_savedmodel")


# ----------------------------------------------------------------------------------------------- lookups


def get(name: str) -> Backend:
    """The entry called ``name`` (KeyError names the known ones)."""
    try:
        return BACKENDS[name]
    except KeyError:
        raise KeyError(f"backend {name!r} is not one of {', '.join(BACKENDS)} (generator/tables/backends.py)") from None


def by_config_name(name: str | None) -> Backend | None:
    """The entry a config's ``platform`` or ``backend`` value means, or None (a backend tritongen does not know)."""
    return _BY_CONFIG_NAME.get(name) if name else None


def of_config(platform: str | None, backend: str | None) -> Backend | None:
    """The entry a config (its ``platform`` and ``backend``) is served by."""
    if platform == "ensemble":
        return ENSEMBLE
    return by_config_name(backend or platform)


def engine_name(platform: str | None, backend: str | None) -> str:
    """platform/backend -> the entry's name (onnxruntime | openvino | pytorch | tensorrt | python | ensemble), or
    the config's own value for a backend not in the table."""
    b = of_config(platform, backend)
    return b.name if b else (backend or platform)


def by_runtime(runtime: str | None, twin_only: bool = False) -> Backend | None:
    """The entry whose artifacts ``runtime`` runs; ``twin_only``: only where the twin reproduces that backend."""
    return next((b for b in BACKENDS.values() if b.runtime and b.runtime == runtime and (b.twin_keys or not twin_only)),
                None)


def default_file(name: str | None) -> str | None:
    """The default model file for a config's platform/backend value."""
    b = by_config_name(name)
    return b.file_for(name) if b else None


def thread_keys() -> dict[str, str]:
    """Every config platform/backend value -> the parameter holding per-instance threads."""
    return {n: b.thread_key for n, b in _BY_CONFIG_NAME.items() if b.thread_key}


def spec_settings() -> dict[str, tuple[str, ...]]:
    """backend -> the keys ``triton.backend.<backend>`` may set in a spec."""
    return {b.name: b.spec_settings for b in BACKENDS.values() if b.spec_settings}


def runtime_for(platform: str | None, backend: str | None) -> str | None:
    """The tritongen runtime that runs a config's artifact (None: python, ensemble, unknown)."""
    return next((b.runtime for b in map(by_config_name, (platform, backend)) if b and b.runtime), None)
