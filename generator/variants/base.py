"""What a variant is: a typed declaration plus one build stage and one runner.

A variant module defines ``VARIANT = Variant(...)``; ``generator/variants/__init__.py`` lists them.
The variant's key is also its path on disk: ``<model>__<key>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..spec import ModelSpec, Tolerance, VariantSpec

Feeds = dict[str, np.ndarray]
Runner = Callable[[Feeds], Feeds]


class Skip(Exception):
    """The variant cannot be built on this machine (no GPU, no TensorRT...): reported, not an error."""


@dataclass
class BuildContext:
    """What a build stage gets. Heavy things are lazy: a cached variant never loads torch."""

    model: ModelSpec
    variant: VariantSpec
    artifact_dir: Path  # write the files of the version folder here
    work_dir: Path  # scratch space for this variant (kept in build/ for inspection)
    base_onnx: Callable[[], Path]  # the exported fp32 ONNX (exported once per model)
    torch_module: Callable[[], object]  # the eval-mode PyTorch module
    calibration: Callable[[], list[Feeds]]  # calibration samples (from spec data or random)
    log: Callable[[str], None]
    reproduce: list[str] = field(default_factory=list)  # shell lines for reproduce.sh
    reproduce_script: str | None = None  # or the whole script, when the variant writes its own
    info: dict = field(default_factory=dict)  # numbers to keep in the manifest
    # PyTorch reference (feeds, point) -> outputs, for stages that verify before they finish (the INT8
    # fallback); None: such a stage builds one from torch_module
    reference: Callable | None = None

    @property
    def options(self):
        """The variant's typed options (generator/spec/options.py); also a mapping of what the spec gave."""
        return self.variant.options


@dataclass(frozen=True)
class Variant:
    key: str  # "onnx-int8"
    filename: str  # Triton's default model file name in the version folder
    platform: str | None  # config `platform`
    backend: str | None  # config `backend`
    precision: str  # fp32 | fp16 | int8 | bf16 | mixed
    devices: tuple[str, ...]  # "cpu", "gpu": where the variant runs in Triton
    tolerance: Tolerance  # default verification tolerance
    template: str  # child template in templates/
    build: Callable[[BuildContext], None]
    runner: Callable[[Path, ModelSpec, dict], Runner]  # (artifact_dir, model, options) -> runner
    runtime: str  # what the embedded runner uses: onnxruntime | torchscript | openvino | tensorrt
    options: type = object  # its typed `options:` (generator/spec/options.py; the spec reader checks them)
    description: str = ""
    extra_parameters: Callable[[ModelSpec, dict], dict] = lambda model, options: {}
    # last word on the rendered values (instance groups, optimization...) for the triton target
    adjust_config: Callable[[ModelSpec, VariantSpec, dict], None] = lambda model, vspec, ctx: None
    # a default tolerance that depends on the model and options (OpenVINO bf16 vs f32; INT8 with real
    # calibration data or random inputs); None: ``tolerance``
    default_tolerance: Callable[[ModelSpec, dict], Tolerance] | None = None

    def tolerance_for(self, model: ModelSpec, spec: VariantSpec) -> Tolerance:
        """Variant spec > model spec > variant default (for these options)."""
        default = self.default_tolerance(model, spec.options) if self.default_tolerance else self.tolerance
        return spec.verify.over(model.verify).over(default)
