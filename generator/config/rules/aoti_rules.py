"""What Triton's pytorch backend requires of a ``torch_aoti`` model (an AOTInductor package ``model.pt2``).

Read from pytorch_backend ``src/pt2/`` (model_state.cc, model_instance_state.cc, call_spec.cc) and the core's
``src/constants.h`` (``kPyTorchAotiPlatform = "torch_aoti"``, ``kPyTorchAotiFilename = "model.pt2"``,
``kPyTorchAotiBackend = "pytorch"``). What the backend does, in short:

- loads ``<version>/<default_model_filename or model.pt2>`` with ``torch::inductor::AOTIModelPackageLoader``
  and the model name ``"model"`` (``INDUCTOR_MODEL_NAME_DEFAULT``): a package holds its models under
  ``<archive>/data/aotinductor/<model name>/``;
- a CPU device for KIND_CPU instances (``device_index -1``), ``cuda:<id>`` for KIND_GPU: a package's kernels are
  compiled for one device kind (``AOTI_DEVICE_KEY`` in its metadata);
- the number of config inputs must equal the package's call-spec inputs ("configuration expects N inputs, but
  model expects M inputs"); inputs map by ``<name>__<index>`` when every name has that form, else in config
  order (the call spec has no argument names), outputs likewise; dtypes as LibTorch (no unsigned 16/32/64, and
  tensors only: no TYPE_STRING in an AOTInductor graph); scalar outputs are refused;
- ``max_batch_size > 0``: the first dim of every input is the batch (the package must take a dynamic one);
- auto-complete is not supported (the config must list inputs and outputs).

Each rule registers with ``backend_rules.rule`` for the engine ``torch_aoti``.
"""

from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path

from generator.config.rules.framework import BACKEND_PARAMETERS, Target, _dtype_name, check_parameter, problem, rule, warning

RENAMED = {"ENABLE_CACHE_CLEANING": "CACHE_CLEANING_ENABLED"}  # libtorch key -> the pt2 loader's

PACKAGE_MODEL_NAME = "model"
# The first Triton release whose pytorch backend has the pt2 (torch_aoti) loader: support was announced on
# triton-inference-server/server#8300 on 2025-12-01, so no earlier monthly release has it. Not verified
# against a release tag here; 24.10 (this project's default target, libtorch 2.5) certainly lacks it.
MIN_RELEASE = "25.12"
_NAMED_INDEX = re.compile(r"^.+__(\d+)$")


def package_contents(path: Path) -> dict:
    """{"models": [names under data/aotinductor/], "metadata": {...}} of a model.pt2, read as a zip (no torch)."""
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        models = sorted({m.group(1) for n in names if (m := re.match(r"^[^/]+/data/aotinductor/([^/]+)/", n))})
        meta = {}
        for n in names:
            if n.endswith("_metadata.json") and "/data/aotinductor/" in n:
                try:
                    meta.update(json.loads(z.read(n)))
                except ValueError:
                    pass
    return {"models": models, "metadata": meta}


def call_spec_counts(path: Path) -> tuple[int, int]:
    """(inputs, outputs) of a package's call spec: tensor leaves of (args, kwargs) and of the outputs."""
    import torch._inductor

    in_spec, out_spec = torch._inductor.aoti_load_package(str(path)).loader.get_call_spec()

    def leaves(node) -> int:
        kids = node.get("children_spec") or []
        return 1 if node.get("type") is None and not kids else sum(leaves(k) for k in kids)

    return leaves(json.loads(in_spec)[1]), leaves(json.loads(out_spec)[1])


def release_problem(release: str) -> str | None:
    """Why ``release`` (YY.MM) cannot serve torch_aoti, or None."""
    try:
        ok = tuple(int(x) for x in release.split(".")[:2]) >= tuple(int(x) for x in MIN_RELEASE.split("."))
    except ValueError:
        return None
    return None if ok else (f"platform torch_aoti needs tritonserver {MIN_RELEASE} or later (the pytorch backend's pt2 "
                            f"loader); {release} cannot load it: target a newer release or use the torchscript variant")


def _packages(t: Target):
    for path in t.artifacts():
        if path.suffix != ".pt2":
            continue
        try:
            yield path, package_contents(path), None
        except (zipfile.BadZipFile, OSError) as e:
            yield path, None, problem(f"{t.at(path)}: not an AOTInductor package ({e}); build it with "
                                      "torch._inductor.aoti_compile_and_package", "aoti_file")


@rule("aoti-package", ("torch_aoti",), "aoti_file", "model.pt2 is an AOTInductor package holding the model 'model'")
def check_aoti_package(t: Target):
    name = t.artifact_name()
    if t.engine == "torch_aoti" and name and not name.endswith(".pt2"):
        yield problem(f"{t.where}: default_model_filename '{name}' is not a .pt2 AOTInductor package the torch_aoti "
                      "platform loads; rename it or remove the field (default model.pt2)")
    for path, pkg, finding in _packages(t):
        if finding:
            yield finding
        elif PACKAGE_MODEL_NAME not in pkg["models"]:
            yield problem(f"{t.at(path)}: the package holds model(s) {pkg['models'] or 'none'} but the pytorch backend "
                          f"loads the one named '{PACKAGE_MODEL_NAME}'; repackage it with aoti_compile_and_package's default name")


@rule("aoti-device", ("torch_aoti",), "aoti_device", "instance kinds match the device the package was compiled for")
def check_aoti_device(t: Target):
    kinds = set(t.instance_kinds())
    for path, pkg, finding in _packages(t):
        if finding:
            continue  # aoti-package reports it
        key = str(pkg["metadata"].get("AOTI_DEVICE_KEY", "")).lower()
        if key == "cpu" and "KIND_GPU" in kinds:
            yield problem(f"{t.where}: instance_group kind KIND_GPU but {path.parent.name}/{path.name} has CPU kernels only; "
                          "use KIND_CPU or build the package on a GPU machine (option device: gpu)")
        elif key.startswith("cuda") and "KIND_CPU" in kinds:
            yield problem(f"{t.where}: instance_group kind KIND_CPU but {path.parent.name}/{path.name} has CUDA kernels; "
                          "use KIND_GPU or build a CPU package")


@rule("aoti-io", ("torch_aoti",), "aoti_io",
      "config inputs = the package's inputs (by <name>__<index>, else config order); tensor dtypes LibTorch has")
def check_aoti_io(t: Target):
    for kind, tensors in (("input", t.cfg.input), ("output", t.cfg.output)):
        for tensor in tensors:
            dt = _dtype_name(tensor.data_type)
            if dt in ("TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64", "TYPE_STRING"):
                yield problem(f"{t.where}: {kind} '{tensor.name}' data_type {dt}: an AOTInductor package takes torch "
                              "tensors of LibTorch's dtypes only; use a signed numeric type (e.g. TYPE_INT64)")
    if not t.cfg.output:
        yield problem(f"{t.where}: no outputs: the torch_aoti platform has no auto-complete; list every output")
    for path in t.artifacts():
        if path.suffix != ".pt2":
            continue
        try:
            n_in, n_out = call_spec_counts(path)
        except ImportError as e:
            yield warning(f"{t.at(path)}: cannot check the package's inputs here ({e}); install torch to check")
            continue
        except Exception as e:  # an unloadable package: the backend fails the same way
            yield problem(f"{t.at(path)}: the package does not load ({str(e).splitlines()[0][:150] if str(e) else type(e).__name__})")
            continue
        names = [i.name for i in t.cfg.input]
        if len(names) != n_in:
            yield problem(f"{t.at(path)}: config declares {len(names)} inputs but the package takes {n_in}; the backend "
                          f"refuses to load ('configuration expects {len(names)} inputs, but model expects {n_in}'); "
                          f"declare {n_in}")
        for what, items, n in (("input", names, n_in), ("output", [o.name for o in t.cfg.output], n_out)):
            idx = [_NAMED_INDEX.match(x) for x in items]
            if items and all(idx):
                bad = [x for x, m in zip(items, idx) if int(m.group(1)) >= n]
                if bad:
                    yield problem(f"{t.at(path)}: {what} '{bad[0]}' names index {_NAMED_INDEX.match(bad[0]).group(1)} but "
                                  f"the package has {n} {what}s; use <name>__0..{n - 1}")
        if len(t.cfg.output) > n_out:
            yield problem(f"{t.at(path)}: config declares {len(t.cfg.output)} outputs but the package returns {n_out}; "
                          "remove the extra outputs")


@rule("aoti-parameters", ("torch_aoti",), "aoti_params",
      "parameter names the pt2 loader reads, with valid values; a warning that the read commit ignores them")
def check_aoti_parameters(t: Target):
    if t.engine != "torch_aoti" or not t.params:
        return
    for k, v in t.params.items():
        if k in RENAMED:
            yield problem(f"{t.where}: parameter '{k}' is libtorch's name; the torch_aoti loader reads {RENAMED[k]} "
                          "(this one is silently ignored); rename it")
        elif k in BACKEND_PARAMETERS["pytorch"] and k not in BACKEND_PARAMETERS["torch_aoti"]:
            yield warning(f"{t.where}: parameter '{k}' is a TorchScript (libtorch) setting; the torch_aoti loader "
                          "does not read it")
        elif why := check_parameter("torch_aoti", k, v):
            yield problem(f"{t.where}: {why.replace('torch_aoti backend', 'torch_aoti loader')}")
    # model_state.cc (commit 40da765, the newest read): ParseParameters runs its body only when the config has
    # NO parameters block (`if (!ModelConfig().Find("parameters", ...))`), so every key here keeps its default.
    yield warning(f"{t.where}: parameters {sorted(t.params)}: the pytorch backend's pt2 loader (src/pt2/model_state.cc "
                  "at the newest commit read) parses parameters only when the config has none, so these keep their "
                  "defaults there; check your release's backend before relying on them")
