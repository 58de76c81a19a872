"""What Triton's native backends require of a model folder, as our own small checks.

Each rule is one function, registered with the backend(s) it concerns and the place in that backend's
documentation or source the requirement comes from. Every finding is one line:
``<model>/<file>: what is wrong; the fix [rule-id: source]``. ``tritongen validate`` and the build (before a
repository is swapped into place) run them all; the README's "Backend rules" table lists them.

Backends, by their config name: ``onnxruntime`` (platform onnxruntime_onnx), ``openvino``, ``pytorch``
(platform pytorch_libtorch), ``tensorrt`` (platform tensorrt_plan), ``python``. A tritongen runner (python
backend with ``parameters.runtime``) stands in for a native backend, so the artifact rules of that backend
apply to it too. Heavy modules (onnx, openvino, torch) are imported only when a rule needs the artifact.
"""

from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

# --------------------------------------------------------------------------------------------- sources

ORT = "onnxruntime_backend"
OV = "openvino_backend"
PT = "pytorch_backend"
CORE = "triton core"
SRC = {
    "ort_params": f"{ORT} src/onnxruntime.cc ModelState (parameters; README 'Model Config Options')",
    "ort_level": f"{ORT} src/onnxruntime.cc: optimization.graph.level -1=BASIC, 1=EXTENDED, 2=DISABLE_ALL, else ALL",
    "ort_gpu_ea": f"{ORT} src/onnxruntime.cc LoadModel: GPU execution accelerators are added only for KIND_GPU/KIND_AUTO instances",
    "ort_ea": f"{ORT} src/onnxruntime.cc: 'unknown Execution Accelerator', 'unknown parameter ... for TensorRT Execution Accelerator'",
    "ort_io": f"{ORT} README/src: config inputs/outputs must match the ONNX graph's names, types and dims",
    "ort_file": f"{ORT} src/onnxruntime.cc LoadModel: <version>/<default_model_filename or model.onnx>; external data is read beside it",
    "ov_params": f"{OV} README 'Parameters'",
    "ov_device": f"{OV} README 'Supported Devices': Intel CPU only",
    "ov_io": f"{OV} README: inputs/outputs match the IR; 'Reshaping models' (RESHAPE_IO_LAYERS), ENABLE_BATCH_PADDING",
    "ov_batch": f"{OV} src/openvino.cc: ov::set_batch(model, max_batch_size); 'expected requests with batch size N... ENABLE_BATCH_PADDING'",
    "ov_file": f"{OV} README 'Loading non default model format': model.xml (+ model.bin), model.onnx, model.pdmodel, model.saved_model",
    "pt_params": f"{PT} README 'Parameters'",
    "pt_io": f"{PT} src/model_instance_state.cc GetNamingConvention/ValidateInputs: forward() argument names, else <name>__<index>, else config order",
    "pt_dtype": f"{PT} src/libtorch_utils.cc ModelConfigDataTypeToTorchType",
    "trt_device": "tensorrt_backend: a plan runs on the GPU it was built for (KIND_GPU only)",
    "core_batch": f"{CORE} docs/user_guide/model_configuration.md 'Maximum Batch Size': max_batch_size > 0 makes the first dim the batch dim",
    "core_warmup": f"{CORE} model_config.proto ModelWarmup + docs 'Model Warmup': every input, at the declared dtype and dims",
    "core_versions": f"{CORE} docs/user_guide/model_repository.md + model_config.proto ModelVersionPolicy",
    "devices": "tritongen variant manifest 'devices' (where the variant's artifact runs)",
}


# ----------------------------------------------------------------------------------------- the target


def normalize_engine(cfg) -> str:
    """platform/backend -> onnxruntime | openvino | pytorch | tensorrt | python | ensemble | (other)."""
    name = cfg.backend or cfg.platform
    if cfg.platform == "ensemble":
        return "ensemble"
    if cfg.platform == "torch_aoti":  # served by backend "pytorch", with the pt2 loader's own rules
        return "torch_aoti"
    return {"onnxruntime_onnx": "onnxruntime", "pytorch_libtorch": "pytorch", "tensorrt_plan": "tensorrt"}.get(name, name)


RUNNER_RUNTIMES = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torchscript": "pytorch",
                   "aoti": "torch_aoti"}  # torch-aoti: rules in backend_rules_aoti.py


@dataclass
class Target:
    """One model folder as the rules see it."""

    cfg: object  # model_config_pb2.ModelConfig
    model_dir: Path
    versions: list[int]
    engine: str
    manifest: dict | None = None
    _sig: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.model_dir.name

    @property
    def where(self) -> str:
        return f"{self.name}/config.pbtxt"

    def at(self, path: Path) -> str:
        return f"{self.name}/{path.parent.name}/{path.name}"

    @property
    def params(self) -> dict[str, str]:
        return {k: v.string_value for k, v in self.cfg.parameters.items()}

    @property
    def stands_for(self) -> str:
        """The native backend whose artifact rules apply: the engine, or the runner's runtime."""
        if self.engine == "python":
            return RUNNER_RUNTIMES.get(self.params.get("runtime", ""), "python")
        return self.engine

    def artifact_name(self) -> str | None:
        if self.engine == "python":
            return self.params.get("artifact")
        return self.cfg.default_model_filename or DEFAULT_FILES.get(self.engine)

    def artifacts(self) -> list[Path]:
        name = self.artifact_name()
        if not name:
            return []
        return [p for v in self.versions if (p := self.model_dir / str(v) / name).is_file()]

    def signature(self, path: Path):
        """(signature, None) or (None, why it cannot be read)."""
        if path not in self._sig:
            try:
                self._sig[path] = (artifact_signature(path), None)
            except ImportError as e:
                self._sig[path] = (None, f"cannot check {path.name} here ({e}); install it to check")
            except Exception as e:  # an unreadable artifact is a finding, not a crash
                self._sig[path] = (None, f"cannot read {path.name} ({str(e).splitlines()[0][:150] if str(e) else type(e).__name__})")
        return self._sig[path]

    def instance_kinds(self) -> list[str]:
        from tritonclient.grpc import model_config_pb2 as pb

        return [pb.ModelInstanceGroup.Kind.Name(g.kind) for g in self.cfg.instance_group]


DEFAULT_FILES = {"onnxruntime": "model.onnx", "pytorch": "model.pt", "tensorrt": "model.plan", "openvino": "model.xml",
                 "python": "model.py", "torch_aoti": "model.pt2"}  # torch_aoti: the pytorch backend's pt2 loader


# ------------------------------------------------------------------------------------- artifact reading

OV_TYPES = {"f32": "TYPE_FP32", "f16": "TYPE_FP16", "f64": "TYPE_FP64", "bf16": "TYPE_BF16", "i64": "TYPE_INT64",
            "i32": "TYPE_INT32", "i16": "TYPE_INT16", "i8": "TYPE_INT8", "u8": "TYPE_UINT8", "u16": "TYPE_UINT16",
            "u32": "TYPE_UINT32", "u64": "TYPE_UINT64", "boolean": "TYPE_BOOL"}


def artifact_signature(path: Path) -> dict:
    """{"inputs"/"outputs": [(names: tuple, triton dtype | None, dims with -1 for dynamic)]} of a model.onnx or
    model.xml, or {"args": [...], "n_outputs": int | None} of a TorchScript model.pt."""
    if path.suffix == ".onnx":
        from . import dtypes
        from .export import onnx_io

        io = onnx_io(path)

        def conv(items):
            return [((n,), getattr(dtypes.BY_ONNX.get(et), "triton", f"onnx elem type {et}"),
                     [d if isinstance(d, int) and d >= 0 else -1 for d in dims]) for n, et, dims in items]

        return {"inputs": conv(io["inputs"]), "outputs": conv(io["outputs"])}
    if path.suffix == ".xml":
        import openvino as ov

        model = ov.Core().read_model(str(path))

        def conv(ports):
            out = []
            for p in ports:
                shape = p.get_partial_shape()
                dims = [-1 if d.is_dynamic else d.get_length() for d in shape] if shape.rank.is_static else None
                et = p.get_element_type().get_type_name()
                out.append((tuple(sorted(p.get_names())), OV_TYPES.get(et, et), dims))
            return out

        return {"inputs": conv(model.inputs), "outputs": conv(model.outputs)}
    if path.suffix == ".pt":
        import torch

        module = torch.jit.load(str(path), map_location="cpu")
        schema = module.forward.schema
        args = [a.name for a in schema.arguments[1:]]  # [0] is self
        required = sum(1 for a in schema.arguments[1:] if a.default_value is None)
        n_out = None
        if len(schema.returns) == 1:
            ret = schema.returns[0].type
            kind = ret.kind()
            n_out = len(ret.elements()) if kind == "TupleType" else (1 if kind == "TensorType" else None)
        return {"args": args, "required": required, "n_outputs": n_out}
    raise ValueError(f"no reader for {path.suffix} files")


# ------------------------------------------------------------------------------------------- registry


@dataclass(frozen=True)
class Finding:
    level: str  # "problem" | "warning"
    text: str  # starts with where: "<model>/config.pbtxt: ..." or "<model>/<version>/<file>: ..."
    source: str | None = None  # a more precise source than the rule's


def problem(text: str, source: str | None = None) -> Finding:
    return Finding("problem", text, SRC[source] if source else None)


def warning(text: str, source: str | None = None) -> Finding:
    return Finding("warning", text, SRC[source] if source else None)


@dataclass(frozen=True)
class Rule:
    id: str
    backends: tuple[str, ...]  # the config backends it concerns ("*" = all)
    source: str
    check: Callable[[Target], Iterable[Finding]]
    summary: str


RULES: list[Rule] = []


def rule(rule_id: str, backends: tuple[str, ...], source: str, summary: str):
    def register(fn):
        RULES.append(Rule(rule_id, backends, SRC[source], fn, summary))
        return fn

    return register


def run_rules(target: Target) -> tuple[list[str], list[str]]:
    """(problems, warnings) as one-line messages."""
    problems, warnings = [], []
    for r in RULES:
        if "*" not in r.backends and target.engine not in r.backends and target.stands_for not in r.backends:
            continue
        for f in r.check(target):
            line = f"{f.text} [{r.id}: {f.source or r.source}]"
            (problems if f.level == "problem" else warnings).append(line)
    return problems, warnings


def is_rule_message(text: str) -> bool:
    return bool(re.search(r" \[[a-z0-9-]+: [^\]]+\]$", text))


# --------------------------------------------------------------------------------------- value checks


def _int(minimum: int = 0, maximum: int | None = None):
    def check(v: str) -> str | None:
        try:
            n = int(v)
        except ValueError:
            return f"'{v}' is not an integer"
        if n < minimum or (maximum is not None and n > maximum):
            return f"{n} is out of range [{minimum}, {maximum if maximum is not None else '...'}]"
        return None

    return check


def _choice(*values: str, case: bool = True):
    def check(v: str) -> str | None:
        ok = v in values if case else v.upper() in [x.upper() for x in values]
        return None if ok else f"'{v}' is not one of {', '.join(values)}"

    return check


def _bool(v: str) -> str | None:
    # triton backend_common ParseBoolValue
    return None if v.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off") else f"'{v}' is not a boolean (true/false)"


def _any(v: str) -> str | None:
    return None


def _streams(v: str) -> str | None:
    if v.upper() in ("AUTO", "NUMA"):
        return None
    return _int(1)(v) and f"'{v}' is not AUTO, NUMA or a positive integer"


# The parameters each native backend reads (names are case-sensitive: the backends look them up exactly).
BACKEND_PARAMETERS: dict[str, dict[str, Callable[[str], str | None]]] = {
    "onnxruntime": {
        "intra_op_thread_count": _int(0), "inter_op_thread_count": _int(0), "execution_mode": _choice("0", "1"),
        "enable_mem_arena": _bool, "enable_mem_pattern": _bool, "memory.enable_memory_arena_shrinkage": _any,
        "session.use_device_allocator_for_initializers": _any, "share_session_between_instances": _bool,
        "cudnn_conv_algo_search": _choice("0", "1", "2"), "gpu_mem_limit": _int(0), "arena_extend_strategy": _choice("0", "1"),
        "do_copy_in_default_stream": _bool,
    },
    "openvino": {
        "PERFORMANCE_HINT": _choice("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT", case=False), "CPU_EXTENSION_PATH": _any,
        "INFERENCE_NUM_THREADS": _int(0), "COMPILATION_NUM_THREADS": _int(0), "HINT_BF16": _choice("YES", case=False),
        "NUM_STREAMS": _streams, "SKIP_OV_DYNAMIC_BATCHSIZE": _choice("YES", "NO", case=False),
        "ENABLE_BATCH_PADDING": _choice("YES", "NO", case=False), "RESHAPE_IO_LAYERS": _choice("YES", "NO", case=False),
    },
    "pytorch": {
        "DISABLE_OPTIMIZED_EXECUTION": _bool, "INFERENCE_MODE": _bool, "DISABLE_CUDNN": _bool,
        "ENABLE_WEIGHT_SHARING": _bool, "ENABLE_CACHE_CLEANING": _bool, "ENABLE_JIT_EXECUTOR": _bool,
        "ENABLE_JIT_PROFILING": _bool, "ENABLE_TENSOR_FUSER": _bool, "ENABLE_NVFUSER": _bool,
        "ENABLE_DETERMINISTIC_ALGORITHMS": _bool, "INTER_OP_THREAD_COUNT": _int(0), "INTRA_OP_THREAD_COUNT": _int(0),
        "NUM_THREADS": _int(0), "NUM_INTEROP_THREADS": _int(0), "TORCH_COMPILE_OPTIONAL_PARAMETERS": _any,
    },
}
PARAM_SOURCE = {"onnxruntime": "ort_params", "openvino": "ov_params", "pytorch": "pt_params"}

TRT_EA_PARAMETERS: dict[str, Callable[[str], str | None]] = {
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
GPU_ACCELERATORS = ("tensorrt", "cuda")
CPU_ACCELERATORS = ("openvino",)


def check_parameter(backend: str, key: str, value: str) -> str | None:
    """Why ``key: value`` is wrong for ``backend``'s config parameters, or None (also used by the spec).
    An unknown key that looks like a known one (case, a typo) is wrong: the backend silently drops the setting."""
    known = BACKEND_PARAMETERS.get(backend)
    if known is None:
        return None
    if key not in known:
        close = [k for k in known if k.lower() == key.lower()] or difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
        if close:
            return (f"parameter '{key}' is not read by the {backend} backend (names are case-sensitive; it is silently "
                    f"ignored); did you mean {close[0]}?")
        return None
    why = known[key](str(value))
    return f"parameter {key}: {why}" if why else None


def unknown_parameter(backend: str, key: str) -> str | None:
    """A parameter the backend does not read and that resembles none it does (metadata, or a mistake)."""
    known = BACKEND_PARAMETERS.get(backend)
    if known is None or key in known or check_parameter(backend, key, ""):
        return None
    return f"parameter '{key}' is not read by the {backend} backend (kept as metadata; it configures nothing)"


# ------------------------------------------------------------------------------------------------ rules


def _noun(path: Path) -> str:
    return {".onnx": "graph", ".xml": "IR"}.get(path.suffix, "artifact")


@rule("batch-dim", ("onnxruntime",), "core_batch", "max_batch_size > 0 needs a dynamic first dim in the ONNX graph")
def check_batch_dim(t: Target):
    if t.cfg.max_batch_size <= 0:
        return
    for path in t.artifacts():
        sig, _ = t.signature(path)
        if not sig or "inputs" not in sig:
            continue
        for kind in ("inputs", "outputs"):
            for names, _, dims in sig[kind]:
                if dims is None or (dims and dims[0] == -1):
                    continue
                yield problem(f"{t.at(path)}: {kind[:-1]} '{names[0] if names else '?'}' has a fixed first dim {dims[:1]} "
                              f"in the {_noun(path)} but max_batch_size is {t.cfg.max_batch_size}; export with a dynamic "
                              "batch dim or set max_batch_size 0")
                return


@rule("openvino-batch", ("openvino",), "ov_batch",
      "with max_batch_size > 0 the backend runs every batch at max_batch_size: ENABLE_BATCH_PADDING=YES or smaller batches fail")
def check_openvino_batch(t: Target):
    if t.engine != "openvino" or t.cfg.max_batch_size <= 0:
        return
    if t.params.get("ENABLE_BATCH_PADDING", "").lower() != "yes":
        yield problem(f"{t.where}: max_batch_size {t.cfg.max_batch_size} without parameters ENABLE_BATCH_PADDING=YES: the "
                      f"openvino backend fixes the batch at {t.cfg.max_batch_size} (ov::set_batch) and refuses every smaller "
                      "batch; set ENABLE_BATCH_PADDING to YES (or max_batch_size 0)")


def _match_io(t: Target, path: Path, sig: dict):
    batched = t.cfg.max_batch_size > 0
    is_ov = t.stands_for == "openvino"
    reshape = is_ov and t.params.get("RESHAPE_IO_LAYERS", "").upper() == "YES"
    where, noun = t.at(path), _noun(path)
    for kind, declared in (("input", t.cfg.input), ("output", t.cfg.output)):
        real = sig[kind + "s"]
        by_name = {n: (dt, dims) for names, dt, dims in real for n in names}
        for tensor in declared:
            if tensor.name not in by_name:
                have = ", ".join(names[0] for names, _, _ in real if names) or "none"
                yield problem(f"{where}: {kind} '{tensor.name}' is not in {path.name} (it has {have}); use the {noun}'s names")
                continue
            dt, dims = by_name[tensor.name]
            want = _dtype_name(tensor.data_type)
            if dt != want:
                yield problem(f"{where}: {kind} '{tensor.name}' data_type {want} but the {noun} has {dt}; make them equal")
                continue
            if dims is None:
                continue
            if batched:
                dims = dims[1:]
            cdims = list(tensor.dims)
            if len(dims) != len(cdims):
                yield problem(f"{where}: {kind} '{tensor.name}' dims {cdims} but the {noun} has rank {len(dims)} {dims}"
                              f"{' after the batch dim' if batched else ''}; fix dims")
                continue
            if is_ov and kind == "input" and -1 in cdims and not reshape:
                what = f"are dynamic where the IR is static {dims}" if all(d > 0 for d in dims) else "have a dynamic dim"
                yield problem(f"{where}: input '{tensor.name}' dims {cdims} {what}: the openvino backend takes -1 only "
                              "through reshaping (older releases reject -1); set parameters RESHAPE_IO_LAYERS=YES", "ov_io")
                continue
            for cd, ad in zip(cdims, dims):
                exact = is_ov and kind == "output"  # openvino_backend compares outputs exactly
                if (ad > 0 and cd != ad and cd != -1 and not (reshape and kind == "input")) or (exact and cd != ad):
                    yield problem(f"{where}: {kind} '{tensor.name}' dims {cdims} but the {noun} has {dims}; fix dims")
                    break
        if kind == "input":
            declared_names = {x.name for x in declared}
            missing = [names[0] for names, _, _ in real if names and not (set(names) & declared_names)]
            if missing:
                yield problem(f"{where}: {noun} input '{missing[0]}' is not declared; add it to input")


def _signatures(t: Target, hint: str = ""):
    """(path, signature, None) per artifact of ``t``, or (path, None, finding) when its signature cannot be read
    (a problem) or is not available here (a warning)."""
    for path in t.artifacts():
        sig, why = t.signature(path)
        if sig is None:
            yield path, None, (problem if why.startswith("cannot read") else warning)(f"{t.at(path)}: {why}{hint}")
        else:
            yield path, sig, None


@rule("io-match", ("onnxruntime", "openvino"), "ort_io",
      "input/output names, data types and dims equal the ONNX graph's / OpenVINO IR's")
def check_io_match(t: Target):
    for path, sig, finding in _signatures(t, "; rebuild the artifact"):
        if finding:
            yield finding
        elif "inputs" in sig:
            yield from _match_io(t, path, sig)


_NAMED_INDEX = re.compile(r"^.+__(\d+)$")


@rule("libtorch-io", ("pytorch",), "pt_io",
      "inputs = forward() arguments (by name, or <name>__<index>, else in order); outputs within what forward() returns")
def check_libtorch_io(t: Target):
    for path, sig, finding in _signatures(t):
        if finding:
            yield finding
            continue
        if "args" not in sig:
            continue
        where = t.at(path)
        args = sig["args"]
        names = [i.name for i in t.cfg.input]
        if not sig.get("required", len(args)) <= len(names) <= len(args):
            yield problem(f"{where}: config declares {len(names)} inputs but forward() takes {len(args)} "
                          f"({', '.join(args)}); declare one input per argument")
            continue
        args = args[:len(names)] if not all(n in args for n in names) else args
        if not all(n in args for n in names):
            idx = [_NAMED_INDEX.match(n) for n in names]
            if all(idx):
                bad = [n for n, m in zip(names, idx) if int(m.group(1)) >= len(args)]
                if bad:
                    yield problem(f"{where}: input '{bad[0]}' names index {_NAMED_INDEX.match(bad[0]).group(1)} but forward() "
                                  f"takes {len(args)} arguments; use <name>__0..{len(args) - 1}")
            else:
                moved = [n for i, n in enumerate(names) if n in args and args.index(n) != i]
                if moved:
                    yield problem(f"{where}: input '{moved[0]}' is forward() argument {args.index(moved[0])} but config "
                                  f"position {names.index(moved[0])}, and not every input is an argument name, so the backend "
                                  f"feeds by config order; name every input after forward() ({', '.join(args)}) or reorder")
                else:
                    yield warning(f"{where}: inputs {names} are neither forward() arguments ({', '.join(args)}) nor "
                                  "<name>__<index>; the backend feeds them in config order")
        outs = [o.name for o in t.cfg.output]
        n_out = sig.get("n_outputs")
        if n_out is not None and len(outs) > n_out:
            yield problem(f"{where}: config declares {len(outs)} outputs but forward() returns {n_out}; remove the extra outputs")
            continue
        oidx = [_NAMED_INDEX.match(n) for n in outs]
        if outs and all(oidx) and n_out is not None:
            bad = [n for n, m in zip(outs, oidx) if int(m.group(1)) >= n_out]
            if bad:
                yield problem(f"{where}: output '{bad[0]}' refers to output index {_NAMED_INDEX.match(bad[0]).group(1)} but "
                              f"forward() returns {n_out}; use <name>__0..{n_out - 1}")


@rule("libtorch-dtype", ("pytorch",), "pt_dtype", "data types LibTorch has (no unsigned 16/32/64-bit)")
def check_libtorch_dtype(t: Target):
    if t.engine != "pytorch":
        return
    for kind, tensors in (("input", t.cfg.input), ("output", t.cfg.output)):
        for tensor in tensors:
            dt = _dtype_name(tensor.data_type)
            if dt in ("TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64"):
                yield problem(f"{t.where}: {kind} '{tensor.name}' data_type {dt} has no torch dtype; use a signed type "
                              "(e.g. TYPE_INT64)")


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


OV_EXTS = (".xml", ".onnx", ".pdmodel", ".saved_model")
EXTS = {"onnxruntime": (".onnx",), "pytorch": (".pt", ".pt2"), "tensorrt": (".plan",), "openvino": OV_EXTS,
        "torch_aoti": (".pt2",)}


@rule("model-files", ("onnxruntime", "openvino", "pytorch", "tensorrt", "torch_aoti"), "ort_file",
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


def onnx_external_files(path: Path) -> list[str]:
    """The external-data locations an ONNX file refers to (without loading the weights)."""
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    out = []
    for init in proto.graph.initializer:
        if init.data_location == onnx.TensorProto.EXTERNAL:
            loc = next((e.value for e in init.external_data if e.key == "location"), None)
            if loc and loc not in out:
                out.append(loc)
    return out


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


def _dtype_name(v: int) -> str:
    from tritonclient.grpc import model_config_pb2 as pb

    return pb.DataType.Name(v)


def read_manifest(model_dir: Path) -> dict | None:
    p = model_dir / "manifest.json"
    if not p.is_file():
        return None
    try:
        return json.loads(p.read_text())
    except ValueError:
        return None


def rule_table() -> list[tuple[str, str, str, str]]:
    """(rule id, backends, check function, source) for the README."""
    return [(r.id, ", ".join(r.backends).replace("*", "all"), r.check.__name__, r.source) for r in RULES]


from . import backend_rules_aoti  # noqa: E402,F401  (torch_aoti rules register themselves with @rule)
