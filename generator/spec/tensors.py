"""``inputs:`` and ``outputs:`` — tensors by name, dtype and shape (no batch dim): integers, named dims
(``dims:``), and for outputs -1 or a named dim no input uses (derived: rendered -1)."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, ValidationInfo, WithJsonSchema, model_validator
from pathlib import Path

from generator.formats import classes
from generator.tables import dtypes
from ..errors import UserError
from .base import Mapping, fail, kind, spec_type

TENSOR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")
DIM_NAME_RE = re.compile(r"^[A-Za-z_]\w*$")


# Triton's (FP32, TYPE_FP32), torch's and numpy's other names for the spec's dtypes: named in the error's fix
_DTYPE_ALIASES = {**{d.triton.removeprefix("TYPE_").lower(): d for d in dtypes.BY_NAME.values()},
                  "float": dtypes.BY_NAME["float32"], "half": dtypes.BY_NAME["float16"],
                  "double": dtypes.BY_NAME["float64"], "long": dtypes.BY_NAME["int64"], "int": dtypes.BY_NAME["int32"],
                  "fp32": dtypes.BY_NAME["float32"], "fp16": dtypes.BY_NAME["float16"], "f32": dtypes.BY_NAME["float32"]}
_DTYPE_ALIASES.update(dtypes.BY_NAME)  # 'Float32', 'INT64' (compared lower-cased)


def _dtype(v: Any) -> Any:
    if isinstance(v, dtypes.DType):
        return v
    if not isinstance(v, str) or not v:
        raise fail(f"expected a non-empty string, got {kind(v)}")
    if v not in dtypes.BY_NAME:
        alias = _DTYPE_ALIASES.get(v.lower().removeprefix("type_").removeprefix("torch."))
        hint = f"; write {alias.name}" if alias else ""
        raise fail(f"'{v}' is not one of {', '.join(dtypes.NAMES)}{hint}")
    return dtypes.BY_NAME[v]


DType = Annotated[dtypes.DType, BeforeValidator(_dtype), WithJsonSchema({"type": "string", "enum": list(dtypes.NAMES)})]


def _tensor_name(v: Any) -> Any:
    if not isinstance(v, str) or not v:
        raise fail(f"expected a non-empty string, got {kind(v)}")
    if not TENSOR_NAME_RE.match(v):
        raise fail(f"'{v}' is not a valid tensor name; start with a letter or '_'")
    return v


TensorName = Annotated[str, BeforeValidator(_tensor_name),
                       WithJsonSchema({"type": "string", "pattern": TENSOR_NAME_RE.pattern})]


def _dim(outputs: bool):
    def check(d: Any) -> Any:
        if isinstance(d, str):
            if d.strip().lstrip("-").isdigit():
                raise fail(f"'{d}' is a string (quoted in the YAML); write the number {d.strip()} without quotes")
            return d
        if isinstance(d, bool) or not isinstance(d, int):
            raise fail(f"expected an integer, got {kind(d)}")
        if d == -1 and outputs:
            return d  # an output dim that follows no input (frames from samples, detections)
        if d == -1:
            raise fail("-1 is for outputs only; give a dynamic input dim a name and declare it under "
                       "dims: {name: [min, opt, max]}")
        if d < 1:
            raise fail(f"must be >= 1, got {d}")
        return d

    return check


_DIM_SCHEMA = [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": DIM_NAME_RE.pattern}]
InputDim = Annotated[Union[int, str], BeforeValidator(_dim(False)), WithJsonSchema({"oneOf": _DIM_SCHEMA})]
OutputDim = Annotated[Union[int, str], BeforeValidator(_dim(True)),
                      WithJsonSchema({"oneOf": [*_DIM_SCHEMA, {"type": "integer", "enum": [-1]}]})]


class TensorSpec:
    """What inputs and outputs share: ``name``, ``dtype``, ``shape`` (ints and named dims, no batch dim)."""

    def concrete(self, dims: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else dims[d] for d in self.shape)

    def triton_dims(self) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in self.shape]


def _range(v: Any) -> Any:
    if v is None or (isinstance(v, tuple) and len(v) == 2):
        return v
    if not isinstance(v, list) or len(v) != 2 or not all(isinstance(x, int) and not isinstance(x, bool) for x in v) \
            or v[0] >= v[1]:
        raise fail("expected [low, high] integers with low < high (high exclusive)")
    return (v[0], v[1])


@spec_type
class InputSpec(Mapping, TensorSpec):
    name: TensorName = Field(description="Tensor name.")
    dtype: DType = Field(description="Element type.")
    shape: tuple[InputDim, ...] = Field(description="Shape without the batch dim: integers and named dims; [] is "
                                                    "one value per sample (served as dims [1], reshape []).")
    range: Annotated[Optional[tuple[int, int]], BeforeValidator(_range), WithJsonSchema(
        {"type": "array", "items": {"type": "integer"}, "minItems": 2, "maxItems": 2})] = Field(
        default=None, description="[low, high) of an integer input (token ids: [0, vocab_size]).")
    format: Optional[Literal["FORMAT_NCHW", "FORMAT_NHWC"]] = Field(
        default=None, description="Image layout clients read from the config (Triton's image_client.py): "
                                  "3 non-batch dims, channels (1 or 3) first (NCHW) or last (NHWC). Inferred "
                                  "from preprocess.image.")
    key = None  # outputs only
    labels = None  # outputs only

    @model_validator(mode="after")
    def _range_is_for_integers(self):
        if self.range is not None and self.dtype.is_float:
            raise fail("only integer inputs take a range; remove it", at="range")
        if self.format is not None:
            try:
                classes.parse_format(self.format, "format", tuple(self.shape))
            except UserError as e:
                raise fail(str(e).split(": ", 1)[1], at="format") from None
        return self


def _key(v: Any) -> Any:
    if v is None:
        return v
    if isinstance(v, bool) or not isinstance(v, (str, int)) or v == "":
        raise fail(f"expected the dict key (a string) or tuple index (an integer) forward() returns this output "
                   f"under, got {kind(v)}")
    return v


@spec_type
class OutputSpec(Mapping, TensorSpec):
    name: TensorName = Field(description="Tensor name (for huggingface sources: a key of the model's output).")
    dtype: DType = Field(description="Element type.")
    shape: tuple[OutputDim, ...] = Field(description="Shape without the batch dim: integers, named dims (a dim no "
                                                     "input uses is derived: rendered -1), or -1 (rendered -1); [] "
                                                     "is one value per sample (served as dims [1], reshape []).")
    key: Annotated[Optional[Union[str, int]], BeforeValidator(_key)] = Field(
        default=None, description="What picks this output from forward()'s result: a dict / ModelOutput key, "
                                  "or an index into a tuple (default: the output's name).")
    labels: Annotated[Optional[tuple[str, ...]], BeforeValidator(lambda v: v), WithJsonSchema(
        {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}}]})] = Field(
        default=None, description="Class labels of a classification output: a list, or a text file (one label a "
                                  "line, relative to the spec); written beside config.pbtxt as label_filename "
                                  "(Triton's class_count answers score:index:label).")
    range = None  # inputs only
    format = None  # inputs only

    @model_validator(mode="before")
    @classmethod
    def _read_labels(cls, data: Any, info: ValidationInfo):
        if isinstance(data, dict) and data.get("labels") is not None and not isinstance(data["labels"], tuple):
            ctx = info.context or {}
            shape = tuple(data.get("shape") or ())
            try:
                labels = classes.parse_labels(data["labels"], "labels", shape, Path(ctx.get("root") or "."))
            except UserError as e:
                raise fail(str(e).split(": ", 1)[1], at="labels") from None
            data = {**data, "labels": labels}
        return data
