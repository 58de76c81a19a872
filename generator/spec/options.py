"""Each variant's ``options:``, typed. The variant keys a spec may list are the keys of ``OPTIONS``.

A variant module reads its own model here (``ctx.options.method``); the spec reader validates a variant's
``options`` with it, so a bad option is a one-line error naming ``models[0].variants[2].options.<key>``
before anything is built. Adding an option is one field in one class below.

``options`` also reads as the mapping the spec gave (``options.get(key)``, ``dict(options)``): what the
user wrote, as written, which is what the build cache digests.
"""

from __future__ import annotations

import dataclasses
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BeforeValidator, Field, WithJsonSchema, model_validator

from .base import Bool, Lower, Mapping, NonNegFloat, PosInt, Str, Upper, fail, spec_type

Names = tuple[Str, ...]


class _GivenMapping(Mapping):
    """The options as the spec gave them, readable as a mapping (typed values are the attributes)."""

    unknown_key_message = "unknown option for {variant}; allowed: {allowed}"
    variant = ""

    @model_validator(mode="wrap")
    @classmethod
    def _keep_given(cls, data: Any, handler):
        obj = handler(data)
        object.__setattr__(obj, "_given", dict(data) if isinstance(data, dict) else
                           {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)
                            if getattr(obj, f.name) != f.default})
        return obj

    # the mapping view: what was written
    def _g(self) -> dict:
        return self.__dict__.get("_given", {})

    def get(self, key: str, default: Any = None) -> Any:
        return self._g().get(key, default)

    def __getitem__(self, key: str) -> Any:
        return self._g()[key]

    def __contains__(self, key: object) -> bool:
        return key in self._g()

    def __iter__(self):
        return iter(self._g())

    def __len__(self) -> int:
        return len(self._g())

    def keys(self):
        return self._g().keys()

    def items(self):
        return self._g().items()

    def values(self):
        return self._g().values()


@spec_type
class TrtAccelerator(Mapping):
    """ONNX Runtime's TensorRT execution provider inside Triton's onnxruntime backend (GPU)."""

    precision: Annotated[Literal["fp32", "fp16", "int8"], Lower] = "fp16"
    workspace_mb: PosInt = 1024
    engine_cache_path: Str = "/tmp"


def _accelerator(v: Any) -> Any:
    if v is True:
        return {}  # the defaults
    if v is False or (v is not None and not isinstance(v, (dict, TrtAccelerator))):
        raise fail("expected true or a mapping {precision, workspace_mb, engine_cache_path}")
    return v


def _streams(v: Any) -> Any:
    if isinstance(v, str) and v.upper() == "AUTO":
        return "AUTO"
    if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 1):
        raise fail(f"expected a positive integer or AUTO, got {v!r}")
    return v


def _release(v: Any) -> Any:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)  # 24.10 written without quotes
    return v


TrtAcceleratorOption = Annotated[Optional[TrtAccelerator], BeforeValidator(_accelerator), WithJsonSchema(
    {"anyOf": [{"type": "boolean", "enum": [True]}, {"x-ref": "TrtAccelerator"}, {"type": "null"}]})]


@spec_type
class OnnxOptions(_GivenMapping):
    variant = "onnx"
    trt_accelerator: TrtAcceleratorOption = Field(
        default=None, description="true or {precision, workspace_mb, engine_cache_path}: ORT's TensorRT "
                                  "execution provider (GPU)")


@spec_type
class OnnxFp16Options(OnnxOptions):
    variant = "onnx-fp16"
    op_block_list: Optional[Names] = Field(default=None, description="ONNX op types kept in float32 "
                                                                     "(e.g. [Softmax, LayerNormalization])")


@spec_type
class OnnxInt8DynamicOptions(OnnxOptions):
    variant = "onnx-int8-dynamic"
    per_channel: Optional[Bool] = Field(default=None, description="per-channel weight scales")
    op_types: Optional[Names] = Field(default=None, description="ONNX op types to quantize")
    nodes_to_exclude: Optional[Names] = Field(default=None, description="node names kept in float")
    reduce_range: Optional[Bool] = Field(default=None, description="7-bit weights (default: the CPU's advice)")
    fusion: Annotated[Literal["auto", "transformer", "none"], Lower] = Field(
        default="none", description="ONNX Runtime's transformer fusions (LayerNorm, SkipLayerNorm, BiasGelu, "
                                    "Attention) before quantizing; auto = transformer when the graph has a Softmax "
                                    "and a LayerNormalization (no speed-up measured on the example ViT: README)")
    num_heads: Optional[PosInt] = Field(default=None, description="attention heads, for the fusion (default: "
                                                                   "read from the graph)")
    hidden_size: Optional[PosInt] = Field(default=None, description="hidden size, for the fusion (default: read "
                                                                     "from the graph)")


QuantType = Annotated[Literal["uint8", "int8"], Lower]


@spec_type
class OnnxInt8Options(OnnxInt8DynamicOptions):
    variant = "onnx-int8"
    calibration_method: Optional[Annotated[Literal["minmax", "entropy", "percentile"], Lower]] = Field(
        default=None, description="range method (default: calibration.method)")
    activation_type: QuantType = Field(default="uint8", description="uint8 = asymmetric, int8 = symmetric")
    weight_type: Optional[QuantType] = Field(default=None, description="default: int8 (uint8 on CPUs without VNNI)")
    fallback: Bool = Field(default=True, description="old name of search")
    search: Optional[Bool] = Field(default=None, description="try other recipes when the gate fails "
                                                             "(default: fallback)")
    search_budget_s: NonNegFloat = Field(default=600, description="seconds the recipe search may take")
    quant_format: Annotated[Literal["qdq", "qoperator"], Lower] = Field(
        default="qdq", description="qdq = QuantizeLinear/DequantizeLinear pairs, qoperator = QLinear* ops")

    @model_validator(mode="after")
    def _weights_follow_activations(self):
        if self.activation_type == "int8" and self.weight_type == "uint8":
            raise fail("uint8 weights need uint8 activations (U8U8); use activation_type: uint8 or weight_type: int8",
                       at="weight_type")
        return self


@spec_type
class OpenvinoOptions(_GivenMapping):
    variant = "openvino"
    inference_precision: Annotated[Literal["f32", "bf16", "auto"], Lower] = Field(
        default="f32", description="bf16 needs avx512_bf16 or AMX; auto: the CPU plugin's default where the model "
        "runs, as Triton's openvino backend runs it without HINT_BF16 (bf16 on CPUs with native bf16, else f32)")
    performance_hint: Annotated[Literal["LATENCY", "THROUGHPUT"], Upper] = "LATENCY"
    num_streams: Annotated[Optional[Union[int, str]], BeforeValidator(_streams), WithJsonSchema(
        {"anyOf": [{"type": "integer", "minimum": 1}, {"type": "string", "enum": ["AUTO"]}, {"type": "null"}]})] = Field(
        default=None, description="a positive integer or AUTO")
    frontend: Annotated[Literal["auto", "pytorch", "onnx"], Lower] = Field(
        default="auto", description="what OpenVINO converts: pytorch (the module itself: attention stays one "
        "ScaledDotProductAttention op, which the CPU plugin fuses), onnx (the optimised fp32 ONNX), auto (pytorch, "
        "else onnx with the reason logged)")
    dead_rows: Bool = Field(
        default=True, description="compute only the rows the outputs read: where an output reads one token "
        "(x[:, 0], x[:, -1]), the ops before it that work token by token compute that token only (ViT-B/16: the last "
        "block for 1 of 197 tokens, 7% less work); the rewritten IR is kept only when it answers as the original")


@spec_type
class OpenvinoInt8Options(OpenvinoOptions):
    variant = "openvino-int8"
    preset: Annotated[Literal["performance", "mixed"], Lower] = "performance"
    model_type: Optional[Annotated[Literal["transformer", "generic"], Lower]] = Field(
        default=None, description="default: transformer when the graph has a Softmax")
    subset_size: PosInt = 300
    fast_bias_correction: Bool = True
    ignored_nodes: Names = ()
    ignored_types: Names = ()
    search: Bool = True
    search_budget_s: NonNegFloat = 600


@spec_type
class TorchscriptOptions(_GivenMapping):
    variant = "torchscript"
    method: Literal["trace", "script"] = Field(default="trace", description="script keeps control flow")
    freeze: Bool = False


@spec_type
class TorchAotiOptions(_GivenMapping):
    variant = "torch-aoti"
    device: Annotated[Literal["cpu", "gpu"], Lower] = Field(
        default="cpu", description="the kernels compiled: cpu here, gpu (CUDA) where torch sees a GPU")
    max_autotune: Bool = Field(default=False, description="inductor max-autotune (multiplies compile time)")


@spec_type
class TensorrtOptions(_GivenMapping):
    variant = "trt"
    profiles: Optional[Any] = Field(default=None, description="[{dim: [min, opt, max]}...]: optimisation profiles "
                                                              "(checked against the model's dims)")
    triton_release: Annotated[Optional[Str], BeforeValidator(_release)] = Field(default=None, description="NGC release the plan is "
                                                                                   "built for (default 24.10)")
    workspace_mb: PosInt = 4096
    builder_optimization_level: Annotated[int, Field(strict=True, ge=0, le=5)] = 3
    cuda_graphs: Bool = False


def _trt(precision: str):
    return spec_type(type(f"Trt{precision.capitalize()}Options", (TensorrtOptions,),
                          {"variant": f"trt-{precision}", "__module__": __name__, "__annotations__": {}}))


# variant key -> its options (the order is the order `known variants` are listed in)
OPTIONS: dict[str, type] = {
    "onnx": OnnxOptions,
    "torchscript": TorchscriptOptions,
    **{f"trt-{p}": _trt(p) for p in ("fp32", "fp16", "int8", "best")},
    "onnx-fp16": OnnxFp16Options,
    "onnx-int8": OnnxInt8Options,
    "onnx-int8-dynamic": OnnxInt8DynamicOptions,
    "openvino": OpenvinoOptions,
    "openvino-int8": OpenvinoInt8Options,
    "torch-aoti": TorchAotiOptions,
}
VARIANT_KEYS = tuple(OPTIONS)
