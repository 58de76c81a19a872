"""What a variant is: a typed declaration plus one build stage and one runner.

A variant module defines ``VARIANT = Variant(...)``; ``generator/variants/__init__.py`` lists them.
The variant's key is also its path on disk: ``<model>__<key>/``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from generator.tables import backends
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
    """One Triton model directory kind. What follows from its backend (config platform/backend, model file name,
    child template, runtime, where it can run) comes from ``generator/tables/backends.py``; a variant states only what
    differs (``devices`` narrower than its backend's, ``platform`` for a second platform of the same backend)."""

    key: str  # "onnx-int8"
    backend: str  # its entry in generator/tables/backends.py: onnxruntime | openvino | pytorch | tensorrt
    precision: str  # fp32 | fp16 | int8 | bf16 | mixed
    tolerance: Tolerance  # default verification tolerance
    build: Callable[[BuildContext], None]
    runner: Callable[[Path, ModelSpec, dict], Runner]  # (artifact_dir, model, options) -> runner
    devices: tuple[str, ...] | None = None  # "cpu", "gpu": where the variant runs in Triton (None: its backend's)
    platform_override: str | None = None  # a platform of the backend other than its default
    options: type = object  # its typed `options:` (generator/spec/options.py; the spec reader checks them)
    description: str = ""
    # the variant's own native-backend ``parameters`` (from its options), before the spec's triton.backend.<backend>
    extra_parameters: Callable[[ModelSpec, dict], dict] = lambda model, options: {}
    # the highest ONNX Runtime graph level (disable < basic < extended < all) its graph survives: the config caps
    # the server's optimization.graph.level at it (None: any)
    max_graph_level: str | None = None
    # a default tolerance that depends on the model and options (OpenVINO bf16 vs f32; INT8 with real
    # calibration data or random inputs); None: ``tolerance``
    default_tolerance: Callable[[ModelSpec, dict], Tolerance] | None = None
    # where the built artifact runs when that depends on its options (a CPU vs CUDA AOTInductor package); None:
    # ``devices``
    devices_for: Callable[[object], tuple[str, ...]] | None = None
    # bumped when the same options build a different artifact (a new conversion path): cached builds of the
    # older recipe are rebuilt (it joins the cache key only when > 0, so other variants keep their keys)
    revision: int = 0

    def devices_of(self, options) -> tuple[str, ...]:
        """Where this variant, built with ``options``, runs."""
        return self.devices_for(options) if self.devices_for else self.devices

    def __post_init__(self):
        entry = backends.get(self.backend)
        if self.devices is None:
            object.__setattr__(self, "devices", entry.devices)
        wider = set(self.devices) - set(entry.devices)
        if wider:
            raise ValueError(f"variant {self.key}: devices {sorted(wider)} are not where the {self.backend} backend runs")

    @property
    def entry(self) -> backends.Backend:
        return backends.get(self.backend)

    @property
    def platform(self) -> str | None:
        """Config ``platform``."""
        return self.platform_override or self.entry.platform

    @property
    def config_backend(self) -> str | None:
        """Config ``backend``."""
        return None if self.platform_override else self.entry.config_backend

    @property
    def served_by(self) -> str:
        """What the config names (platform, else backend): for messages."""
        return self.platform or self.config_backend or self.backend

    @property
    def filename(self) -> str:
        """Triton's default model file name in the version folder."""
        return self.entry.file_for(self.platform)

    @property
    def template(self) -> str:
        """Child template in templates/."""
        return self.entry.template

    @property
    def runtime(self) -> str:
        """What verification and the embedded runner use: onnxruntime | torchscript | openvino | tensorrt."""
        return self.entry.runtime

    def tolerance_for(self, model: ModelSpec, spec: VariantSpec) -> Tolerance:
        """Variant spec > model spec > variant default (for these options)."""
        default = self.default_tolerance(model, spec.options) if self.default_tolerance else self.tolerance
        return spec.verify.over(model.verify).over(default)
