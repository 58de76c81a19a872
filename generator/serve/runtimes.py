"""The one runtime layer: ONNX Runtime, TorchScript, AOTInductor (``model.pt2``) and OpenVINO sessions, created here and only here.

Used by verification (the variants' runners), the embedded twin (``templates/runner/model.py``), the
in-process baseline (``perf/baseline.py``) and the bench (``perf/bench.py``). Sessions are configured from a
model config's ``parameters`` -- the native backends' own keys (``intra_op_thread_count``, ``NUM_STREAMS``,
``INFERENCE_MODE``...) -- so the twin and the in-process numbers run what Triton's native backend would run,
and each session says which of those settings it reproduced and which it could not (``Session.reproduced``,
``Session.not_reproduced``).

This file must stay standalone (numpy and the runtimes only, imported lazily; from ``generator`` only the
standalone backend table, ``generator/tables/backends.py``): the build copies both beside the twin's ``model.py`` as
``tritongen_runtimes.py`` and ``tritongen_backends.py``, because the python-backend stub runs isolated and
cannot import ``generator``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import os

import numpy as np

try:
    from ..tables import backends as _backends  # relative: a standalone copy falls back below
except ImportError:  # the build's copy beside the twin's model.py
    import tritongen_backends as _backends

ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}
# onnxruntime_backend: optimization.graph.level -1 = BASIC, 1 = EXTENDED, 2 = DISABLE_ALL, anything else ALL
ORT_LEVEL_BY_NUMBER = {n: name for name, n in _backends.ORT_GRAPH_LEVELS.items() if n}

# the native keys each runtime's session honours (the same names the native backends read)
ORT_KEYS = _backends.ONNXRUNTIME.twin_keys
OV_KEYS = _backends.OPENVINO.twin_keys
PT_KEYS = _backends.PYTORCH.twin_keys
THREAD_KEY = {b.runtime: b.thread_key for b in _backends.BACKENDS.values() if b.twin_keys}
# torch_aoti (pytorch_backend src/pt2/model_state.cc ParseParameters): the keys its ModelState reads
AOTI_KEYS = _backends.TORCH_AOTI.twin_keys


def _true(v) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def settings_from_parameters(runtime: str, params: Mapping[str, str], graph_level: int | None = None) -> dict:
    """A config's ``parameters`` (string values) -> the settings :func:`open_session` takes, for ``runtime``
    (onnxruntime | openvino | torchscript). Native keys win; tritongen's older runner keys
    (``intra_op_threads``, ``ort_graph_optimization_level``, ``openvino_inference_precision``) fill in.
    ``graph_level``: the config's ``optimization.graph.level`` (ONNX Runtime)."""
    p = {k: str(v) for k, v in params.items() if v is not None and str(v) != ""}
    legacy_threads = p.get("intra_op_threads")
    if runtime == "onnxruntime":
        s = {k: p[k] for k in ORT_KEYS if k in p}
        if "intra_op_thread_count" not in s and legacy_threads and int(legacy_threads) > 0:
            s["intra_op_thread_count"] = legacy_threads
        level = p.get("ort_graph_optimization_level")
        if level is None and graph_level is not None:
            level = ORT_LEVEL_BY_NUMBER.get(int(graph_level), "all")
        s["graph_level"] = (level or "all").lower()
        return s
    if runtime == "openvino":
        s = {k: p[k] for k in OV_KEYS if k in p}
        if "INFERENCE_NUM_THREADS" not in s and legacy_threads and int(legacy_threads) > 0:
            s["INFERENCE_NUM_THREADS"] = legacy_threads
        if "PERFORMANCE_HINT" not in s and p.get("openvino_performance_hint"):
            s["PERFORMANCE_HINT"] = p["openvino_performance_hint"]
        if p.get("instances", "").isdigit():  # the model's instance count (templates/runner/model.py)
            s["instances"] = p["instances"]
        precision = p.get("openvino_inference_precision") or ("bf16" if _true(p.get("HINT_BF16", "")) else "f32")
        s["inference_precision"] = precision.lower()
        return s
    if runtime == "torchscript":
        s = {k: p[k] for k in PT_KEYS if k in p}
        if "INTRA_OP_THREAD_COUNT" not in s and legacy_threads and int(legacy_threads) > 0:
            s["INTRA_OP_THREAD_COUNT"] = legacy_threads
        return s
    if runtime == "aoti":
        s = {k: p[k] for k in AOTI_KEYS if k in p}
        if "INTRA_OP_THREAD_COUNT" not in s and legacy_threads and int(legacy_threads) > 0:
            s["INTRA_OP_THREAD_COUNT"] = legacy_threads
        return s
    raise ValueError(f"runtime {runtime!r} is not one of onnxruntime, openvino, torchscript, aoti")


def with_threads(runtime: str, settings: dict, threads: int) -> dict:
    """``settings`` with the runtime's intra-op thread count replaced (0 = the runtime's default)."""
    out = dict(settings)
    key = THREAD_KEY[runtime]
    if threads > 0:
        out[key] = str(threads)
    else:
        out.pop(key, None)
    return out


def threads_of(runtime: str, settings: dict) -> int:
    return int(settings.get(THREAD_KEY[runtime]) or 0)


class Session:
    """A loaded artifact: ``session(arrays)`` -> output arrays, both in the config's order; ``session.feeds(dict)``
    -> dict of outputs. ``reproduced``/``not_reproduced``: native setting -> what the session did / why not."""

    def __init__(self, runtime: str, in_names: Sequence[str], out_names: Sequence[str]):
        self.runtime = runtime
        self.in_names = list(in_names)
        self.out_names = list(out_names)
        self.reproduced: dict[str, str] = {}
        self.not_reproduced: dict[str, str] = {}

    def __call__(self, arrays: Sequence[np.ndarray]) -> list[np.ndarray]:
        raise NotImplementedError

    def feeds(self, feeds: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return dict(zip(self.out_names, self([feeds[n] for n in self.in_names])))

    def summary(self) -> str:
        done = ", ".join(f"{k}={v}" for k, v in self.reproduced.items()) or "defaults"
        missing = "; ".join(f"{k}: {v}" for k, v in self.not_reproduced.items())
        return f"{self.runtime}: {done}" + (f" | not reproduced: {missing}" if missing else "")


# ------------------------------------------------------------------------------------------- ONNX Runtime


def ort_session(path: Path, level: str = "all", threads: int = 0, optimized_out: Path | None = None,
                disabled_optimizers: list[str] | None = None, settings: Mapping[str, str] | None = None,
                providers: list | None = None, record: Session | None = None):
    """An ``onnxruntime.InferenceSession`` on CPU. ``settings`` (native keys) override ``level``/``threads``."""
    import onnxruntime as ort

    s = dict(settings or {})
    level = s.get("graph_level", level)
    intra = int(s.get("intra_op_thread_count") or threads or 0)
    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
    so.log_severity_level = 4  # fatal only: an error is raised to the caller, not printed (with colour codes) too
    rec = record.reproduced if record is not None else {}
    rec["graph_level"] = f"{level} ({ORT_LEVELS[level]})"
    if intra > 0:
        so.intra_op_num_threads = intra
        rec["intra_op_thread_count"] = str(intra)
    if "inter_op_thread_count" in s:
        if int(s["inter_op_thread_count"]) > 0:
            so.inter_op_num_threads = int(s["inter_op_thread_count"])
        rec["inter_op_thread_count"] = s["inter_op_thread_count"]
    elif intra > 0 and settings is None:
        so.inter_op_num_threads = 1  # the historical in-process default (sequential mode ignores it anyway)
    if "execution_mode" in s:
        so.execution_mode = ort.ExecutionMode.ORT_PARALLEL if s["execution_mode"] == "1" else ort.ExecutionMode.ORT_SEQUENTIAL
        rec["execution_mode"] = "parallel" if s["execution_mode"] == "1" else "sequential"
    if "enable_mem_arena" in s:
        so.enable_cpu_mem_arena = _true(s["enable_mem_arena"])
        rec["enable_mem_arena"] = str(so.enable_cpu_mem_arena).lower()
    if "enable_mem_pattern" in s:
        so.enable_mem_pattern = _true(s["enable_mem_pattern"])
        rec["enable_mem_pattern"] = str(so.enable_mem_pattern).lower()
    if s.get("profile_file_prefix"):  # perf.opprofile: ORT's per-node profiler (a tritongen key, not the backend's)
        so.enable_profiling = True
        so.profile_file_prefix = s["profile_file_prefix"]
    if record is not None:
        record.options = so  # what was asked (ORT may fall back, e.g. to sequential execution, on its own)
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    kwargs = {}
    if disabled_optimizers:
        kwargs["disabled_optimizers"] = disabled_optimizers
    return ort.InferenceSession(str(path), so, providers=providers or ["CPUExecutionProvider"], **kwargs)


class OrtSession(Session):
    def __init__(self, path, in_names, out_names, settings, gpu=None):
        super().__init__("onnxruntime", in_names, out_names)
        providers = None
        if gpu is not None:
            import onnxruntime as ort

            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers = [("CUDAExecutionProvider", {"device_id": gpu}), "CPUExecutionProvider"]
        self.session = ort_session(Path(path), settings=settings, providers=providers, record=self)
        art_in = [i.name for i in self.session.get_inputs()]
        art_out = [o.name for o in self.session.get_outputs()]
        # by name where the artifact's names match the config's, else by position
        self.feed = self.in_names if set(self.in_names) <= set(art_in) else art_in[: len(self.in_names)]
        self.fetch = self.out_names if set(self.out_names) <= set(art_out) else art_out[: len(self.out_names)]

    def __call__(self, arrays):
        return self.session.run(self.fetch, dict(zip(self.feed, arrays)))


# ------------------------------------------------------------------------------------------- TorchScript


def _torch_threads(torch, s: dict, session: "Session") -> None:
    """INTRA_OP_THREAD_COUNT / INTER_OP_THREAD_COUNT as the pytorch backend applies them (both loaders)."""
    intra = int(s.get("INTRA_OP_THREAD_COUNT") or 0)
    if intra > 0:
        torch.set_num_threads(intra)
        session.reproduced["INTRA_OP_THREAD_COUNT"] = str(intra)
    if "INTER_OP_THREAD_COUNT" in s and int(s["INTER_OP_THREAD_COUNT"]) > 0:
        try:
            torch.set_num_interop_threads(int(s["INTER_OP_THREAD_COUNT"]))
            session.reproduced["INTER_OP_THREAD_COUNT"] = s["INTER_OP_THREAD_COUNT"]
        except RuntimeError as e:  # only settable once per process, before any inter-op work
            session.not_reproduced["INTER_OP_THREAD_COUNT"] = str(e).splitlines()[0][:80]


class TorchScriptSession(Session):
    def __init__(self, path, in_names, out_names, settings, gpu=None):
        import torch

        super().__init__("torchscript", in_names, out_names)
        s = dict(settings or {})
        self.torch = torch
        _torch_threads(torch, s, self)
        self.inference_mode = _true(s.get("INFERENCE_MODE", "true"))  # the backend's default: on
        self.reproduced["INFERENCE_MODE"] = str(self.inference_mode).lower()
        if "DISABLE_OPTIMIZED_EXECUTION" in s:
            torch._C._set_graph_executor_optimize(not _true(s["DISABLE_OPTIMIZED_EXECUTION"]))
            self.reproduced["DISABLE_OPTIMIZED_EXECUTION"] = str(_true(s["DISABLE_OPTIMIZED_EXECUTION"])).lower()
        for k in ("ENABLE_JIT_EXECUTOR", "ENABLE_JIT_PROFILING", "DISABLE_CUDNN", "ENABLE_WEIGHT_SHARING",
                  "ENABLE_CACHE_CLEANING"):
            if k in s:
                self.not_reproduced[k] = "not applied by the twin (GPU/JIT-internal setting)"
        self.device = torch.device(f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu")
        self.module = torch.jit.load(str(path), map_location=self.device).eval()

    def __call__(self, arrays):
        torch = self.torch
        guard = torch.inference_mode() if self.inference_mode else torch.no_grad()
        with guard:
            args = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
            out = self.module(*args)
        if isinstance(out, dict):
            out = [out[n] for n in self.out_names]
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return [o.detach().cpu().contiguous().numpy() for o in out]


# ------------------------------------------------------------------------- AOTInductor package (torch_aoti)


class AotiSession(Session):
    """A ``model.pt2`` AOTInductor package, loaded as Triton's pytorch backend loads a ``torch_aoti`` model
    (``AOTIModelPackageLoader``, model name ``model``): positional tensors in, a flat tuple of tensors out, in
    the exported program's order. Loading needs no compiler: the package carries the compiled ``.so``."""

    def __init__(self, path, in_names, out_names, settings, gpu=None):
        import torch
        import torch._inductor

        super().__init__("aoti", in_names, out_names)
        s = dict(settings or {})
        self.torch = torch
        _torch_threads(torch, s, self)
        # the pt2 ModelState's default is off (inference_mode_enabled_ = false); the compiled kernels ignore autograd
        self.inference_mode = _true(s.get("INFERENCE_MODE", "false"))
        self.reproduced["INFERENCE_MODE"] = str(self.inference_mode).lower()
        for k in ("DISABLE_OPTIMIZED_EXECUTION", "CACHE_CLEANING_ENABLED", "DISABLE_CUDNN", "ENABLE_WEIGHT_SHARING"):
            if k in s:
                self.not_reproduced[k] = "no effect on a compiled AOTInductor package in the twin"
        self.device = torch.device(f"cuda:{gpu}" if gpu is not None and torch.cuda.is_available() else "cpu")
        kwargs = {"device_index": self.device.index if self.device.type == "cuda" else -1}
        self.model = torch._inductor.aoti_load_package(str(path), **kwargs)
        self.metadata = dict(self.model.get_metadata())

    def __call__(self, arrays):
        torch = self.torch
        guard = torch.inference_mode() if self.inference_mode else torch.no_grad()
        with guard:
            args = [torch.from_numpy(np.ascontiguousarray(a)).to(self.device) for a in arrays]
            out = self.model(*args)
        if isinstance(out, dict):
            out = [out[n] for n in self.out_names]
        elif not isinstance(out, (list, tuple)):
            out = [out]
        return [o.detach().cpu().contiguous().numpy() for o in out]


# --------------------------------------------------------------------------------------------- OpenVINO


def openvino_available() -> str | None:
    """None when OpenVINO imports, else why not (for a Skip)."""
    try:
        import openvino  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return f"openvino is not importable here ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); pip install openvino"
    return None


def openvino_default_precision() -> str:
    """The CPU plugin's own inference precision on this CPU (bf16 where it has native bf16, else f32): what
    Triton's openvino backend runs when the config sets no HINT_BF16 (it cannot ask for f32)."""
    import openvino as ov

    default = str(ov.Core().get_property("CPU", "INFERENCE_PRECISION_HINT")).lower()  # "<Type: 'bfloat16'>"
    return "bf16" if ("bfloat16" in default or "bf16" in default) else "f32"


def openvino_resolve(precision: str) -> str:
    """``auto`` -> this CPU's plugin default (``openvino_default_precision``); f32 and bf16 as they are."""
    return openvino_default_precision() if str(precision).lower() == "auto" else str(precision).lower()


def openvino_supports(precision: str) -> bool:
    """Whether this CPU runs ``precision`` (bf16 needs avx512_bf16 or AMX; f32 and auto always)."""
    if precision in ("f32", "auto"):
        return True
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return precision.upper() in [str(c).upper() for c in caps]


def openvino_compile(path: Path, precision: str = "f32", hint: str = "LATENCY", threads: int = 0,
                     streams: int | str | None = None, settings: Mapping[str, str] | None = None,
                     input_dims: Mapping[str, Sequence[int]] | None = None, record: Session | None = None,
                     max_batch_size: int = 0):
    """Compile an IR (or ONNX) file for CPU. ``settings`` (the openvino backend's keys) override the keyword
    defaults. f32 and bf16 are explicit (the native backend cannot force f32: OpenVINO's CPU plugin defaults to
    bf16 on CPUs with native bf16); ``auto`` sets no precision, as the native backend without HINT_BF16.
    ``max_batch_size`` > 0: as the backend (ValidateInputs), an 'N...' layout on every input and
    ``ov::set_batch(model, max_batch_size)``: compiled at that batch, static."""
    import openvino as ov

    s = dict(settings or {})
    rec = record.reproduced if record is not None else {}
    core = ov.Core()
    precision = s.get("inference_precision", precision)
    cfg = {"PERFORMANCE_HINT": s.get("PERFORMANCE_HINT", hint).upper()}
    rec["PERFORMANCE_HINT"] = cfg["PERFORMANCE_HINT"]
    if str(precision).lower() == "auto":
        rec["precision"] = f"auto: the CPU plugin's default here, {openvino_default_precision()} (as the native backend)"
    else:
        cfg["INFERENCE_PRECISION_HINT"] = precision
        rec["precision"] = precision + (" (HINT_BF16)" if precision == "bf16" else " (explicit; the native backend cannot force f32)")
    n = int(s.get("INFERENCE_NUM_THREADS") or threads or 0)
    st = s.get("NUM_STREAMS", streams)
    share = int(s.get("instances") or 1)
    if share > 1:
        # the native backend compiles once and runs each of the model's N instances as an infer request on it: the
        # twin has a process per instance, so each takes its share of the threads and streams, unpinned (pinned,
        # every process's threads land on the same cores)
        n = max(1, (n or (os.cpu_count() or 1)) // share)
        if st is not None and str(st).isdigit():
            st = max(1, int(st) // share)
        cfg["ENABLE_CPU_PINNING"] = False
        rec["instances"] = f"{share} sharing one compiled model (per process: its share, unpinned)"
    if n > 0:
        cfg["INFERENCE_NUM_THREADS"] = n
        rec["INFERENCE_NUM_THREADS"] = str(n)
    if st is not None:
        cfg["NUM_STREAMS"] = st if isinstance(st, int) else (int(st) if str(st).isdigit() else str(st).upper())
        rec["NUM_STREAMS"] = str(st)
    if _true(s.get("PERF_COUNT", "")):  # perf.opprofile: per-node counters (infer_request.get_profiling_info())
        cfg["PERF_COUNT"] = True
    if s.get("COMPILATION_NUM_THREADS"):
        cfg["COMPILATION_NUM_THREADS"] = int(s["COMPILATION_NUM_THREADS"])
        rec["COMPILATION_NUM_THREADS"] = s["COMPILATION_NUM_THREADS"]
    model = core.read_model(str(path))
    if _true(s.get("RESHAPE_IO_LAYERS", "")) and input_dims:
        shapes = {}
        for port in model.inputs:
            hit = next((n for n in port.get_names() if n in input_dims), None)
            if hit is not None:
                shapes[port] = ov.PartialShape([d if d > 0 else -1 for d in input_dims[hit]])
        model.reshape(shapes)
        rec["RESHAPE_IO_LAYERS"] = "YES"
    if max_batch_size > 0:
        ppp = ov.preprocess.PrePostProcessor(model)
        for i in range(len(model.inputs)):
            ppp.input(i).tensor().set_layout(ov.Layout("N..."))
        model = ppp.build()
        ov.set_batch(model, int(max_batch_size))
        rec["set_batch"] = str(max_batch_size)
    return core.compile_model(model, "CPU", cfg)


class OpenVINOSession(Session):
    """As Triton's openvino backend: with ``max_batch_size`` > 0 every run is at max_batch_size (the backend's
    ``ov::set_batch``), smaller batches zero-padded when ENABLE_BATCH_PADDING=YES and refused otherwise."""

    def __init__(self, path, in_names, out_names, settings, gpu=None, input_dims=None, max_batch_size=0):
        super().__init__("openvino", in_names, out_names)
        self.max_batch_size = int(max_batch_size or 0)
        self.compiled = openvino_compile(Path(path), settings=settings, input_dims=input_dims, record=self,
                                         max_batch_size=self.max_batch_size)
        self.pad = _true((settings or {}).get("ENABLE_BATCH_PADDING", ""))
        if self.max_batch_size > 0:
            self.reproduced["batch"] = (f"every run at max_batch_size {self.max_batch_size}"
                                        f"{', zero-padded (ENABLE_BATCH_PADDING)' if self.pad else ', smaller batches refused'}")
        self.request = self.compiled.create_infer_request()
        art_in = [sorted(p.get_names()) for p in self.compiled.inputs]
        self.in_index = []
        for pos, name in enumerate(self.in_names):
            hit = [i for i, names in enumerate(art_in) if name in names]
            self.in_index.append(hit[0] if hit else pos)
        self.out_ports = []
        for pos, name in enumerate(self.out_names):
            hit = [p for p in self.compiled.outputs if name in p.get_names()]
            self.out_ports.append(hit[0] if hit else self.compiled.outputs[pos])

    def __call__(self, arrays):
        n = arrays[0].shape[0] if self.max_batch_size > 0 and arrays and arrays[0].ndim else None
        if n is not None and n > self.max_batch_size:  # Triton's core refuses it before any backend sees it
            raise ValueError(f"inference request batch-size must be <= {self.max_batch_size}, got {n}")
        if n is not None and n != self.max_batch_size:
            if not self.pad:
                raise ValueError(f"expected requests with batch size '{self.max_batch_size}', got '{n}' (as Triton's "
                                 "openvino backend); set ENABLE_BATCH_PADDING to YES")
            arrays = [np.concatenate([a, np.zeros((self.max_batch_size - n, *a.shape[1:]), a.dtype)]) for a in arrays]
        result = self.request.infer({self.in_index[i]: np.ascontiguousarray(a) for i, a in enumerate(arrays)})
        out = [np.array(result[p]) for p in self.out_ports]
        return [o[:n] for o in out] if n is not None else out


# ----------------------------------------------------------------------------------------------- entry


SESSIONS = {"onnxruntime": OrtSession, "torchscript": TorchScriptSession, "openvino": OpenVINOSession,
            "aoti": AotiSession}


def open_session(runtime: str, path, in_names: Sequence[str], out_names: Sequence[str],
                 settings: Mapping[str, str] | None = None, gpu: int | None = None,
                 input_dims: Mapping[str, Sequence[int]] | None = None, max_batch_size: int = 0) -> Session:
    """Load ``path`` with ``runtime`` configured by ``settings`` (from :func:`settings_from_parameters`).
    ``input_dims`` (config dims with the batch dim) and ``max_batch_size``: what the served config declares."""
    if runtime not in SESSIONS:
        raise ValueError(f"runtime {runtime!r} is not one of {', '.join(SESSIONS)}")
    if runtime == "openvino":
        return OpenVINOSession(path, in_names, out_names, dict(settings or {}), gpu, input_dims, max_batch_size)
    return SESSIONS[runtime](path, in_names, out_names, dict(settings or {}), gpu)


# ------------------------------------------------------------- feeds-in/outputs-out runners (verification)


def ort_runner(path: Path, output_names: list[str], level: str = "all", threads: int = 0):
    sess = ort_session(path, level=level, threads=threads)

    def run(feeds):
        return dict(zip(output_names, sess.run(output_names, feeds)))

    return run


def onnx_artifact_runner(level: str = "all"):
    """The variant ``runner`` for a ``model.onnx`` artifact: (artifact_dir, model, options) -> runner."""

    def make(artifact_dir: Path, model, options: dict):
        return ort_runner(artifact_dir / "model.onnx", [t.name for t in model.outputs], level=level)

    return make


def torchscript_runner(path: Path, input_names: list[str], output_names: list[str], settings: Mapping[str, str] | None = None):
    return TorchScriptSession(path, input_names, output_names, dict(settings or {})).feeds


def aoti_runner(path: Path, input_names: list[str], output_names: list[str], settings: Mapping[str, str] | None = None):
    return AotiSession(path, input_names, output_names, dict(settings or {})).feeds


def openvino_runner(path: Path, input_names: list[str], output_names: list[str], precision: str = "f32",
                    threads: int = 0, settings: Mapping[str, str] | None = None):
    """Feeds in, outputs out, through one OpenVINO infer request (ports matched by tensor name)."""
    s = {"inference_precision": precision, **({"INFERENCE_NUM_THREADS": str(threads)} if threads else {}),
         **dict(settings or {})}
    return OpenVINOSession(path, input_names, output_names, s).feeds


# ----------------------------------------------- native-backend behaviours the twin mimics (generator/tables/releases.py)


def openvino_padding_rows(sizes: Sequence[int], max_batch_size: int, stale_pad: int) -> tuple[int, int]:
    """What openvino_backend (ENABLE_BATCH_PADDING=YES) returns for one execution of requests of ``sizes``: (rows of
    output it hands back, the ``batch_pad_size_`` it leaves for the next execution). It sets the pad inside its
    per-request loop only while the running total differs from max_batch_size and never resets it, so an execution
    adding up to max_batch_size keeps an earlier pad and returns max_batch_size - pad rows: its last requests get
    none (src/openvino.cc ProcessRequests / ValidateOutputBatchSize, r24.10 to main)."""
    total, pad = 0, stale_pad
    for s in sizes:
        total += int(s)
        if total != max_batch_size:
            pad = max_batch_size - total
    return max_batch_size - pad, pad


def interop_threads_owner(model_name: str) -> str | None:
    """The twin's stand-in for libtorch's process-wide inter-op pool: each python-backend model runs in its own
    stub process, so the first model of this server that sets INTER_OP_THREAD_COUNT claims a marker beside the
    server (keyed by its pid and start time). None when ``model_name`` may set it, else the model that did first."""
    import os
    import tempfile

    ppid = os.getppid()
    try:
        with open(f"/proc/{ppid}/stat") as fh:
            start = fh.read().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        start = "0"
    folder = Path(tempfile.gettempdir()) / f"tritongen-twin-{ppid}-{start}"
    folder.mkdir(exist_ok=True)
    marker = folder / "INTER_OP_THREAD_COUNT"
    tmp = folder / f".claim-{os.getpid()}"
    tmp.write_text(model_name)
    try:
        os.link(tmp, marker)  # atomic: exactly one model wins, and the marker is never half-written
        return None
    except FileExistsError:
        owner = marker.read_text()
        return None if owner == model_name else owner
    finally:
        tmp.unlink(missing_ok=True)
