"""Variant ``torchscript``: a traced (or scripted) TorchScript module for ``pytorch_libtorch``.

The traced module takes the inputs in the spec's order (forward()'s parameters carry the declared
names where they are identifiers) and passes them to the model by name; it returns the declared outputs
as a tuple in the spec's order, picked by key from dicts (Triton's libtorch backend maps by order).
Option ``method: trace | script`` (default trace; script keeps data-dependent control flow).
"""

from __future__ import annotations

import re
from pathlib import Path

from generator.stages.export import example_point, io_adapter, script_adapter, traced_branch
from generator.loading.inputs import make_inputs
from generator.serve.runtimes import torchscript_runner
from ..errors import VariantFailed
from ..spec import ModelSpec, Tolerance
from ..spec.options import TorchscriptOptions
from .base import BuildContext, Variant


def build(ctx: BuildContext) -> None:
    import torch

    module = ctx.torch_module()
    method = ctx.options.method  # trace | script (checked with the spec: generator/spec/options.py)
    # The artifact is always the spec's I/O adapter traced (inputs by position in declared order, passed to
    # the model by name; outputs a tuple in declared order, picked by key): Triton's libtorch backend maps
    # both by order. ``script`` scripts the model itself first, so its control flow survives inside.
    if method == "script" and not isinstance(module, torch.jit.ScriptModule):
        module = torch.jit.script(module)  # then wrapped like a TorchScript source
    feeds = make_inputs(ctx.model, example_point(ctx.model), seed=2)
    args = tuple(torch.from_numpy(feeds[t.name]) for t in ctx.model.inputs)
    if isinstance(module, torch.jit.ScriptModule):
        scripted = script_adapter(module, ctx.model, args)
    else:
        import warnings

        with torch.inference_mode(False), torch.no_grad(), warnings.catch_warnings(record=True) as records:
            warnings.simplefilter("always")
            scripted = torch.jit.trace(io_adapter(module, ctx.model), args, check_trace=False, strict=False)
        if branch := traced_branch(records):
            ctx.log(f"warning: {branch}")
            ctx.info["traced_branch"] = branch
    try:
        scripted = torch.jit.freeze(scripted.eval()) if ctx.options.freeze else scripted
        torch.jit.save(scripted, str(ctx.artifact_dir / "model.pt"))
    except RuntimeError as e:  # the trace recorded a call into Python that a saved TorchScript module cannot make
        if m := re.search(r"Could not export Python function call '(\w+)'", str(e)):
            raise VariantFailed(f"torchscript: the traced model calls the Python function '{m.group(1)}' (a "
                                "torch.autograd.Function in the model's code), which TorchScript cannot save; serve the "
                                "onnx or torch-aoti variant") from None
        raise
    ctx.info["method"] = method
    ctx.reproduce.append(f"python -c \"import torch; torch.jit.save(torch.jit.{method}(model, example_inputs), 'model.pt')\"")


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    return torchscript_runner(artifact_dir / "model.pt", [t.name for t in model.inputs], [t.name for t in model.outputs])


VARIANT = Variant(
    key="torchscript",
    backend="pytorch",
    precision="fp32",
    tolerance=Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    build=build,
    runner=runner,
    options=TorchscriptOptions,
    description="TorchScript (torch.jit.trace/script) for the pytorch_libtorch backend",
)
