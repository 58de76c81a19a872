"""Variant ``torchscript``: a traced (or scripted) TorchScript module for ``pytorch_libtorch``.

Input names follow forward()'s argument order as declared in the spec; outputs are mapped by
order (Triton's libtorch backend does both when names are not ``NAME__i``).
Option ``method: trace | script`` (default trace; script keeps data-dependent control flow).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import VariantFailed
from ..export import example_point
from ..inputs import make_inputs
from ..runtimes import torchscript_runner
from ..spec import ModelSpec, Tolerance
from .base import BuildContext, Variant


def build(ctx: BuildContext) -> None:
    import torch

    module = ctx.torch_module()
    method = ctx.options.get("method", "trace")
    if method not in ("trace", "script"):
        raise VariantFailed(f"{ctx.model.where}.variants.torchscript.options.method: '{method}' is not trace or script")
    if isinstance(module, torch.jit.ScriptModule):
        scripted = module
    elif method == "script":
        scripted = torch.jit.script(module)
    else:
        feeds = make_inputs(ctx.model, example_point(ctx.model), seed=2)
        args = tuple(torch.from_numpy(feeds[t.name]) for t in ctx.model.inputs)
        with torch.inference_mode(False), torch.no_grad():
            scripted = torch.jit.trace(module, args, check_trace=False, strict=False)
    scripted = torch.jit.freeze(scripted.eval()) if ctx.options.get("freeze", False) else scripted
    torch.jit.save(scripted, str(ctx.artifact_dir / "model.pt"))
    ctx.info["method"] = method
    ctx.reproduce.append(f"python -c \"import torch; torch.jit.save(torch.jit.{method}(model, example_inputs), 'model.pt')\"")


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    return torchscript_runner(artifact_dir / "model.pt", [t.name for t in model.inputs], [t.name for t in model.outputs])


VARIANT = Variant(
    key="torchscript",
    filename="model.pt",
    platform="pytorch_libtorch",
    backend=None,
    precision="fp32",
    devices=("cpu", "gpu"),
    tolerance=Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    template="libtorch.pbtxt.j2",
    build=build,
    runner=runner,
    runtime="torchscript",
    options=("method", "freeze"),
    description="TorchScript (torch.jit.trace/script) for the pytorch_libtorch backend",
)
