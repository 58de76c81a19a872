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
