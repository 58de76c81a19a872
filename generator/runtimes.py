"""In-process runners used to verify artifacts (and by the benchmark): feeds in, outputs out.

Heavy runtimes are imported lazily.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

ORT_LEVELS = {"disable": "ORT_DISABLE_ALL", "basic": "ORT_ENABLE_BASIC", "extended": "ORT_ENABLE_EXTENDED",
              "all": "ORT_ENABLE_ALL"}


def ort_session(path: Path, level: str = "all", threads: int = 0, optimized_out: Path | None = None,
                disabled_optimizers: list[str] | None = None):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.graph_optimization_level = getattr(ort.GraphOptimizationLevel, ORT_LEVELS[level])
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    if optimized_out is not None:
        so.optimized_model_filepath = str(optimized_out)
    kwargs = {}
    if disabled_optimizers:
        kwargs["disabled_optimizers"] = disabled_optimizers
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"], **kwargs)


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


def torchscript_runner(path: Path, input_names: list[str], output_names: list[str]):
    import torch

    module = torch.jit.load(str(path), map_location="cpu").eval()

    def run(feeds):
        args = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in input_names]
        with torch.inference_mode():
            out = module(*args)
        if isinstance(out, torch.Tensor):
            out = [out]
        elif isinstance(out, dict):
            out = list(out.values())
        return {n: o.numpy() for n, o in zip(output_names, out)}

    return run


def openvino_available() -> str | None:
    """None when OpenVINO imports, else why not (for a Skip)."""
    try:
        import openvino  # noqa: F401
    except Exception as e:  # ImportError, or a broken native library
        return f"openvino is not importable here ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}); pip install openvino"
    return None


def openvino_supports(precision: str) -> bool:
    """Whether this CPU runs ``precision`` (bf16 needs avx512_bf16 or AMX; f32 always)."""
    if precision == "f32":
        return True
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    return precision.upper() in [str(c).upper() for c in caps]


def openvino_compile(path: Path, precision: str = "f32", hint: str = "LATENCY", threads: int = 0,
                     streams: int | None = None):
    """Compile an IR (or ONNX) file for CPU with an explicit inference precision (f32 | bf16)."""
    import openvino as ov

    core = ov.Core()
    cfg = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision}
    if threads:
        cfg["INFERENCE_NUM_THREADS"] = threads
    if streams is not None:
        cfg["NUM_STREAMS"] = streams
    return core.compile_model(core.read_model(str(path)), "CPU", cfg)


def openvino_runner(path: Path, input_names: list[str], output_names: list[str], precision: str = "f32",
                    threads: int = 0):
    """Feeds in, outputs out, through one OpenVINO infer request (ports matched by tensor name)."""
    compiled = openvino_compile(path, precision=precision, threads=threads)
    request = compiled.create_infer_request()
    ports = {}
    for name in output_names:
        hit = [p for p in compiled.outputs if name in p.get_names()]
        ports[name] = hit[0] if hit else compiled.outputs[output_names.index(name)]

    def run(feeds):
        result = request.infer({n: np.ascontiguousarray(feeds[n]) for n in input_names})
        return {n: np.array(result[p]) for n, p in ports.items()}

    return run
