"""One table for every dtype name tritongen speaks: spec, numpy, torch, ONNX, Triton."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class DType:
    name: str  # spec name
    numpy: str  # numpy dtype name
    triton: str  # model_config DataType enum name
    onnx: int  # onnx.TensorProto enum value
    is_float: bool

    @property
    def itemsize(self) -> int:
        return np.dtype(self.numpy).itemsize


# onnx.TensorProto values, written out so this module imports without onnx.
_TABLE = [
    DType("float32", "float32", "TYPE_FP32", 1, True),
    DType("float16", "float16", "TYPE_FP16", 10, True),
    DType("float64", "float64", "TYPE_FP64", 11, True),
    DType("int64", "int64", "TYPE_INT64", 7, False),
    DType("int32", "int32", "TYPE_INT32", 6, False),
    DType("int16", "int16", "TYPE_INT16", 5, False),
    DType("int8", "int8", "TYPE_INT8", 3, False),
    DType("uint8", "uint8", "TYPE_UINT8", 2, False),
    DType("bool", "bool", "TYPE_BOOL", 9, False),
]

BY_NAME = {d.name: d for d in _TABLE}
BY_TRITON = {d.triton: d for d in _TABLE}
BY_ONNX = {d.onnx: d for d in _TABLE}
NAMES = tuple(BY_NAME)


def from_numpy(dtype) -> DType:
    name = np.dtype(dtype).name
    for d in _TABLE:
        if d.numpy == name:
            return d
    raise KeyError(name)


def torch_dtype(d: DType):
    import torch

    return getattr(torch, d.name)
