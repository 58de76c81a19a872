"""Variant ``torch-aoti``: an AOTInductor package ``model.pt2`` for Triton's ``torch_aoti`` platform.

``torch.export.export`` of the spec's I/O adapter (inputs by position in declared order, outputs a flat tuple in
declared order: the pytorch backend's pt2 loader feeds and reads by position unless names are ``<name>__<i>``),
with the batch dim and every named dim dynamic (``torch.export.Dim``, min/max from ``max_batch_size`` and the
spec's ``dims``), then ``torch._inductor.aoti_compile_and_package`` (CPU kernels here; CUDA kernels when built
where torch sees a GPU and the variant is asked for ``device: gpu``). The package is machine code: its CPU
kernels are compiled for this machine's vector ISA (recorded in the manifest as ``cpu_isa``).

Compiling needs a C++ compiler (``$CXX`` or ``g++``, the one inductor looks for) with OpenMP: checked before
anything is exported, a Skip with one line when missing. Options: ``device: cpu | gpu`` (default cpu),
``max_autotune`` (default false: on 2 cores autotuning multiplies compile time).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from ..errors import VariantFailed
from generator.stages.export import dynamic_shapes, example_point, io_adapter  # noqa: F401 (dynamic_shapes: tests)
from generator.loading.inputs import make_inputs
from generator.serve.runtimes import aoti_runner
from ..spec import ModelSpec, Tolerance
from ..spec.options import TorchAotiOptions
from .base import BuildContext, Skip, Variant

FILENAME = "model.pt2"  # pytorch_backend INDUCTOR_MODEL_ARTIFACT_NAME_DEFAULT; core kPyTorchAotiFilename
PACKAGE_MODEL_NAME = "model"  # pytorch_backend INDUCTOR_MODEL_NAME_DEFAULT: the model inside the package it loads


def compiler_problem() -> str | None:
    """None when inductor can compile here, else the one-line reason. Inductor's own lookup (torch/_inductor/
    config.py ``cpp.cxx``): ``$CXX``, else ``g++``; it also needs OpenMP's ``omp.h``."""
    cxx = os.environ.get("CXX") or "g++"
    found = shutil.which(cxx)
    if not found:
        return (f"no C++ compiler: AOTInductor compiles the package with {cxx!r} ($CXX, else g++), which is not on PATH; "
                "install g++ (apt-get install g++) or set CXX")
    with tempfile.TemporaryDirectory(prefix="tritongen-cxx-") as tmp:
        src = Path(tmp) / "probe.cpp"
        src.write_text("#include <omp.h>\nint main() { return omp_get_max_threads() > 0 ? 0 : 1; }\n")
        try:
            r = subprocess.run([found, "-fopenmp", "-fsyntax-only", str(src)], capture_output=True, text=True, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"the C++ compiler {found} does not run ({type(e).__name__}); install g++ or set CXX"
        if r.returncode != 0:
            first = (r.stderr.strip().splitlines() or ["?"])[0][:160]
            return f"{found} cannot compile with OpenMP ({first}); install g++ with libgomp (apt-get install g++)"
    return None


def build(ctx: BuildContext) -> None:
    why = compiler_problem()
    if why:
        raise Skip(why)
    import torch
    import torch._inductor

    device = ctx.options.device  # checked by the spec reader (generator/spec/options.py TorchAotiOptions)
    if device == "gpu" and not torch.cuda.is_available():
        raise Skip("device gpu: torch sees no CUDA device here; build the CUDA package on a GPU machine")
    module = ctx.torch_module()
    if isinstance(module, torch.jit.ScriptModule):
        raise VariantFailed(f"{ctx.model.where}.source: torch.export cannot export a TorchScript module; give the "
                            "model as a factory, pickle or exported_program")
    dev = torch.device("cuda" if device == "gpu" else "cpu")
    feeds = make_inputs(ctx.model, example_point(ctx.model), seed=3)
    args = tuple(torch.from_numpy(feeds[t.name]).to(dev) for t in ctx.model.inputs)
    adapter = io_adapter(module.to(dev) if device == "gpu" else module, ctx.model)
    t0 = time.perf_counter()
    with torch.no_grad():
        try:
            program = torch.export.export(adapter, args, dynamic_shapes=dynamic_shapes(ctx.model), strict=False)
        except Exception as e:
            if why := constraint_violation(str(e)):
                raise VariantFailed(f"torch-aoti: torch.export {why}") from None
            raise
    export_s = time.perf_counter() - t0
    ctx.log(f"torch.export: {len(program.graph.nodes)} graph nodes in {export_s:.1f} s")
    configs = {"max_autotune": bool(ctx.options.max_autotune)}
    t0 = time.perf_counter()
    path = torch._inductor.aoti_compile_and_package(program, package_path=str(ctx.artifact_dir / FILENAME),
                                                    inductor_configs=dict(configs))  # it adds its own keys
    compile_s = time.perf_counter() - t0
    ctx.log(f"aoti_compile_and_package: {Path(path).stat().st_size / 1e6:.1f} MB in {compile_s:.1f} s")
    from torch._inductor import cpu_vec_isa

    ctx.info.update(export_s=round(export_s, 2), compile_s=round(compile_s, 2), device=device,
                    cpu_isa=str(cpu_vec_isa.pick_vec_isa()) or "none", inductor_configs=configs,
                    torch=torch.__version__)
    ctx.reproduce_script = _reproduce(ctx, configs, device)


def constraint_violation(text: str) -> str:
    """torch.export's "Constraints violated" error in one line: which dim cannot take every value of its declared
    range, the guard forward() needs, and torch's suggested fix; "" for any other error."""
    if "Constraints violated" not in text:
        return ""
    guards = re.findall(r"Not all values of (\w+) = (.*?) in the specified range (.*?) satisfy the generated guard "
                        r"(.*?)\.?$", text, re.M)
    fixes = [f.strip() for f in re.findall(r"^\s+(\w+ = .+)$", text.split("Suggested fixes:", 1)[-1], re.M)] \
        if "Suggested fixes:" in text else []
    if not guards:
        return "found forward() specialising on a dim the spec declares dynamic; make it shape-generic"
    dim, expr, rng, guard = guards[0]
    guard = guard.strip().replace(expr, dim)  # ((-1) + L['ids'].size()[1]) != 1 -> ((-1) + seq) != 1
    more = f" (and {len(guards) - 1} more)" if len(guards) > 1 else ""
    fix = f"; torch suggests {', '.join(fixes[:3])}" if fixes else ""
    return (f"cannot keep {dim} dynamic over its range ({rng}): forward() needs {guard}{more}; narrow "
            f"dims.{dim} (or the batch) to what the model takes{fix}")


def _reproduce(ctx: BuildContext, configs: dict, device: str) -> str:
    dims = {"batch": (1, max(ctx.model.max_batch_size, 2))} if ctx.model.max_batch_size > 0 else {}
    dims.update({n: (lo, max(hi, 2)) for n, (lo, _, hi) in ctx.model.dims.items()})
    return (
        "#!/usr/bin/env bash\n"
        f"# Reproduce variant 'torch-aoti' of model '{ctx.model.name}': torch.export + AOTInductor -> model.pt2.\n"
        "set -euo pipefail\n"
        "python - <<'PY'\n"
        "# `model` is the eval-mode module behind tritongen's I/O adapter (declared inputs by position, declared\n"
        "# outputs as a tuple); `example_inputs` one batch at the example point (batch 2, dims at opt).\n"
        "import torch, torch._inductor\n"
        "from torch.export import Dim\n"
        f"dims = {{name: Dim(name, min=lo, max=hi) for name, (lo, hi) in {dims!r}.items()}}\n"
        "# dynamic_shapes: one {axis: dims[name]} per input (axis 0 = batch), as tritongen's spec declares\n"
        "program = torch.export.export(model, example_inputs, dynamic_shapes=dynamic_shapes, strict=False)\n"
        f"torch._inductor.aoti_compile_and_package(program, package_path='model.pt2', inductor_configs={configs!r})\n"
        f"# device: {device}\n"
        "PY\n"
    )


def runner(artifact_dir: Path, model: ModelSpec, options: dict):
    return aoti_runner(artifact_dir / FILENAME, [t.name for t in model.inputs], [t.name for t in model.outputs])


def devices_for(options) -> tuple[str, ...]:
    """A CPU package cannot run on a GPU instance (nor a CUDA one on CPU): the groups follow the build device."""
    return ("gpu",) if options.device == "gpu" else ("cpu",)


VARIANT = Variant(
    key="torch-aoti",
    backend="torch_aoti",  # platform torch_aoti (core src/constants.h kPyTorchAotiPlatform), the pytorch backend
    precision="fp32",
    tolerance=Tolerance(atol=1e-4, rtol=1e-3, min_cosine=0.9999),
    build=build,
    runner=runner,
    options=TorchAotiOptions,
    description="AOTInductor package (torch.export + aoti_compile_and_package) for the torch_aoti platform",
    devices_for=devices_for,
)
