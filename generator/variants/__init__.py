"""The variant registry: one small module per variant, listed here in one place."""

from __future__ import annotations

from . import onnx_fp16, onnx_fp32, onnx_int8, onnx_int8_dynamic, openvino_int8, openvino_ir, tensorrt_plan, torchscript
from . import torch_aoti
from .base import BuildContext, Runner, Skip, Variant

_ALL = [onnx_fp32.VARIANT, torchscript.VARIANT, *tensorrt_plan.VARIANTS,
        onnx_fp16.VARIANT, onnx_int8.VARIANT, onnx_int8_dynamic.VARIANT, openvino_ir.VARIANT, openvino_int8.VARIANT,
        torch_aoti.VARIANT]

REGISTRY: dict[str, Variant] = {v.key: v for v in _ALL}

__all__ = ["REGISTRY", "BuildContext", "Runner", "Skip", "Variant"]
