"""The variant registry: one small module per variant, listed here in one place."""

from __future__ import annotations

from . import onnx_fp32, tensorrt_plan, torchscript
from .base import BuildContext, Runner, Skip, Variant

_ALL = [onnx_fp32.VARIANT, torchscript.VARIANT, *tensorrt_plan.VARIANTS]

REGISTRY: dict[str, Variant] = {v.key: v for v in _ALL}

__all__ = ["REGISTRY", "BuildContext", "Runner", "Skip", "Variant"]
