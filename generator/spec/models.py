"""The spec as typed, frozen models: what the user asked for. One definition gives the reader
(``generator/spec/reader.py``), the field-path errors (``errors.py``), the JSON Schema (``schema.py``) and the
README's key reference. A key is one field here; a variant option is one field in ``options.py``."""

from __future__ import annotations

import dataclasses

import hashlib
import json
import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

from pydantic_core import PydanticCustomError
from pydantic import BeforeValidator, Field, ValidationError, ValidationInfo, WithJsonSchema, field_validator, \
    model_validator

from ..errors import UserError
from .base import Bool, Fraction, Lower, Mapping, NonNegFloat, PosInt, Str, fail, internal, kind, spec_type
from .hf_folder import POOLINGS, TASKS as HF_TASKS, read_source
from .options import OPTIONS, VARIANT_KEYS
from .tensors import DIM_NAME_RE, TENSOR_NAME_RE, InputSpec, OutputSpec, TensorSpec  # noqa: F401
from .preprocess import ImagePreprocess, PreprocessSection, TextPreprocess, resolve as resolve_preprocess
from .triton import TritonSpec
from .tune import TuneSettings

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
FACTORY_RE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def checkpoint_shards(index: Path) -> list[Path]:
    """The shard files a sharded checkpoint's ``*.index.json`` names (its ``weight_map`` values, beside it), in
    order of first use. ValueError says what is wrong with the index."""
    try:
        data = json.loads(Path(index).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"'{Path(index).name}' is not a readable JSON index ({type(e).__name__}: {str(e)[:100]})")
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap or not all(isinstance(v, str) for v in wmap.values()):
        raise ValueError(f"'{Path(index).name}' has no weight_map of tensor -> shard file; give the index that "
                         "save_pretrained / save_torch_state_dict wrote")
    shards = [Path(index).parent / name for name in dict.fromkeys(wmap.values())]
    for shard in shards:
        if shard.suffix not in (".safetensors", ".bin", ".pt", ".pth"):
            raise ValueError(f"'{Path(index).name}' names shard '{shard.name}', not a .safetensors or torch file")
        if not shard.is_file():
            raise ValueError(f"'{Path(index).name}' names shard '{shard.name}', which is not beside it; copy every "
                             "shard next to the index")
    return shards
TASKS = ("generic", "classification", "embedding")


def _root(info: ValidationInfo | None) -> Path:
    ctx = (info.context or {}) if info is not None else {}
    return Path(ctx.get("root") or ".")


def _where(info: ValidationInfo | None) -> str:
    ctx = (info.context or {}) if info is not None else {}
    return ctx.get("where", "model")


def _path(v: Any, info: ValidationInfo) -> Any:
    """A file named relative to the spec's folder, resolved."""
    if v is None or isinstance(v, Path):
        return v
    if not isinstance(v, str) or not v:
        raise fail(f"expected a non-empty string, got {kind(v)}")
    return (_root(info) / v).resolve()


FilePath = Annotated[Optional[Path], BeforeValidator(_path), WithJsonSchema({"type": "string"})]


# ------------------------------------------------------------------------------------------------ source


@spec_type
class PickleSource(Mapping):
    path: Str = Field(description="The pickled module file.")
    trust: Bool = Field(default=False, description="Must be true: loading a pickle runs arbitrary code.")


_KINDS = ("factory", "torchscript", "exported_program", "pickle")
_FACTORY_ONLY = ("kwargs", "checkpoint", "state_dict_key", "strip_prefix")
_HF_ONLY = ("task", "pooling", "normalize", "trust")


@spec_type
class Source(Mapping):
    """Where the PyTorch model comes from: exactly one source kind."""

    factory: Optional[Str] = Field(default=None, description="'module:callable' returning an nn.Module, importable "
                                   "from the spec's folder.", json_schema_extra={"pattern": FACTORY_RE.pattern})
    kwargs: dict = Field(default_factory=dict, description="Keyword arguments for the factory.")
    checkpoint: FilePath = Field(default=None, description="state_dict file for the factory (.pt .pth .bin .ckpt "
                                                           ".safetensors), or a sharded checkpoint's *.index.json "
                                                           "(its shards beside it).")
    state_dict_key: Optional[Str] = Field(default=None, description="Key of the state_dict inside the checkpoint "
                                                                    "(e.g. state_dict).")
    strip_prefix: Optional[Str] = Field(default=None, description="Prefix removed from every state_dict key "
                                                                  "(e.g. 'module.').")
    torchscript: Optional[Str] = Field(default=None, description="A TorchScript file (torch.jit.save).")
    exported_program: Optional[Str] = Field(default=None, description="A torch.export file (.pt2).")
    pickle: Optional[PickleSource] = Field(default=None, description="A whole pickled module: runs code when "
                                                                     "loaded; needs trust: true.")
    huggingface: Optional[Str] = Field(default=None, description="A local Hugging Face folder (config.json + "
                                       "model.safetensors); never a hub id: tritongen never downloads.")
    task: Optional[Literal[HF_TASKS]] = Field(default=None, description="huggingface: what to serve (default: "
                                                                       "from the architecture).")
    pooling: Optional[Literal[POOLINGS]] = Field(default=None, description="huggingface feature-extraction: mean, "
                                                                          "cls or none (token states).")
    normalize: Optional[Bool] = Field(default=None, description="huggingface feature-extraction: L2-normalise the "
                                                                "embeddings.")
    trust: Bool = Field(default=False, description="huggingface: allow pickled weights (pytorch_model.bin) of a "
                                                   "folder you trust; factory: load the checkpoint with "
                                                   "weights_only=False (a Lightning .ckpt whose hyper-parameters are "
                                                   "Python objects: runs code, only for files you trust).")
    # what the source is, once read: factory | torchscript | exported_program | pickle | huggingface
    kind: str = internal("")
    path: Optional[Path] = internal(None)  # torchscript / exported_program / pickle file, huggingface folder

    @model_validator(mode="after")
    def _one_kind(self, info: ValidationInfo):
        if self.kind:
            return self  # already read (built in code, or copied)
        root, set_ = _root(info), lambda k, v: object.__setattr__(self, k, v)
        given = {k for k in ("factory", "kwargs", "checkpoint", "state_dict_key", "strip_prefix", *_KINDS[1:],
                             "huggingface", "task", "pooling", "normalize")
                 if getattr(self, k) not in (None, {})} | ({"trust"} if self.trust else set())
        if self.huggingface is not None:
            other = [k for k in (*_KINDS, *_FACTORY_ONLY) if k in given]
            if other:
                raise fail("not used with huggingface; give one source kind", at=other[0])
            raw = {k: getattr(self, k) for k in ("huggingface", "task", "pooling", "normalize", "trust")
                   if getattr(self, k) is not None}
            src = read_source(raw, f"{_where(info)}.source", root)
            set_("kind", "huggingface"), set_("path", src.folder), set_("trust", src.trust)
            return self
        hf_only = [k for k in _HF_ONLY if k in given and not (k == "trust" and self.checkpoint is not None)]
        if hf_only:
            raise fail("only used with huggingface (and trust with a factory's checkpoint); remove it", at=hf_only[0])
        kinds = [k for k in _KINDS if k in given]
        if len(kinds) != 1:
            got = " and ".join(kinds) if kinds else "none"
            raise fail(f"give exactly one of factory, torchscript, exported_program, pickle (got {got})")
        k = kinds[0]
        if k != "factory":
            extra = [x for x in _FACTORY_ONLY if x in given]
            if extra:
                raise fail(f"only used with factory; remove it for a {k} source", at=extra[0])
        if k == "factory":
            if not FACTORY_RE.match(self.factory):
                raise fail(f"'{self.factory}' is not 'module:callable' (e.g. examples.vit:vit_b16)", at="factory")
            if self.checkpoint is not None and (root / self.checkpoint).is_dir():
                hf = " (a Hugging Face folder: source.huggingface)" if (root / self.checkpoint / "config.json").is_file() else ""
                raise fail(f"'{self.checkpoint}' is a folder; give the state_dict file in it{hf}", at="checkpoint")
            if self.checkpoint is not None and self.checkpoint.name.endswith(".index.json"):
                try:  # a missing index is the build's "not found", like any checkpoint
                    if (root / self.checkpoint).is_file():
                        checkpoint_shards(root / self.checkpoint)
                except ValueError as e:
                    raise fail(str(e), at="checkpoint") from None
            elif self.checkpoint is not None and self.checkpoint.suffix not in CHECKPOINT_SUFFIXES:
                raise fail(f"'{self.checkpoint.name}' has an unknown suffix; use one of "
                           f"{', '.join(CHECKPOINT_SUFFIXES)}, or a sharded checkpoint's *.index.json", at="checkpoint")
        elif k == "pickle":
            if not self.pickle.trust:
                raise fail("loading a full pickle runs arbitrary code; set trust: true only for files you made "
                           "yourself, or save a state_dict and use factory + checkpoint", at="pickle.trust")
            p = (root / self.pickle.path).resolve()
            if not p.is_file():
                raise fail(f"file '{self.pickle.path}' not found (paths are relative to the spec file's folder)",
                           at="pickle.path")
            set_("path", p), set_("trust", True)
        else:
            set_("path", (root / getattr(self, k)).resolve())
        set_("kind", k)
        return self

    def files(self) -> list[Path]:
        if self.kind == "huggingface":  # a folder: its config, weights and pooling files
            from .hf_folder import source_files

            return source_files(self.path, self.trust)
        if self.checkpoint is not None and self.checkpoint.name.endswith(".index.json") and self.checkpoint.is_file():
            try:
                return [self.checkpoint, *checkpoint_shards(self.checkpoint)]  # every shard keys the cache
            except ValueError:
                pass  # the load says what is wrong with it
        return [p for p in (self.checkpoint, self.path) if p is not None]


# ------------------------------------------------------------------------------------- gates, calibration


@spec_type
class Tolerance(Mapping):
    """Accuracy gate. Element-wise (atol/rtol), cosine, and task metrics over the verification set:
    classification -> top-1 agreement and top-5 overlap with PyTorch; embedding -> mean cosine."""

    atol: Optional[NonNegFloat] = Field(default=None, description="Absolute tolerance vs PyTorch.")
    rtol: Optional[NonNegFloat] = Field(default=None, description="Relative tolerance vs PyTorch.")
    min_cosine: Optional[Fraction] = Field(default=None, description="Minimum output cosine vs PyTorch.")
    min_int_agreement: Optional[Fraction] = Field(default=None, description="Integer and bool outputs: fraction of "
                                                  "values equal to PyTorch's (default 1, exact). Indices picked from "
                                                  "floats (argmax, top-k) may move in an INT8 or fp16 variant.")
    task: Optional[Literal[TASKS]] = Field(default=None, description="Task metric gate.")
    min_top1: Optional[Fraction] = Field(default=None, description="classification: fraction of samples whose "
                                                                   "top-1 class equals PyTorch's.")
    min_top5: Optional[Fraction] = Field(default=None, description="classification: mean overlap of the top-5 sets.")
    min_mean_cosine: Optional[Fraction] = Field(default=None, description="embedding: mean cosine with PyTorch.")
    samples: Optional[PosInt] = Field(default=None, description="Size of the task-metric set (calibration data or "
                                                                "random).")
    data: FilePath = Field(default=None, description="A separate verification set for the task metrics (.npz, "
                                                     "image folder or sentences .txt); default: the calibration data.")
    # the classification gate for INT8 (generator/stages/gate.py, gate_data.py)
    accuracy_ratio: Optional[Fraction] = Field(default=None, description="With labels: INT8 top-1/top-5 accuracy >= "
                                               "this x fp32's on the same samples (MLPerf's 99%: 0.99).")
    min_confident_agreement: Optional[Fraction] = Field(default=None, description="Without labels: top-1 agreement "
                                                        "with fp32 on the samples where fp32 is confident (0.97).")
    confidence: Optional[Fraction] = Field(default=None, description="fp32 top-1 softmax probability that makes a "
                                           "sample confident.")
    min_confident_samples: Optional[PosInt] = Field(default=None, description="Fewer confident samples: the gate "
                                                    "refuses to decide and says what data to give.")
    labels: FilePath = Field(default=None, description="One integer label per line, in sample order (else labels "
                             "from an image folder's class sub-folders or an .npz `labels` array).")
    reuse_calibration: Optional[Bool] = Field(default=None, description="Verify on the calibration samples (default: "
                                              "never; the calibration data is held out).")

    @model_validator(mode="after")
    def _ratio_above_zero(self):
        if self.accuracy_ratio is not None and self.accuracy_ratio <= 0:
            raise fail("must be above 0 (MLPerf's rule is 0.99)", at="accuracy_ratio")
        return self

    def over(self, base: "Tolerance") -> "Tolerance":
        """This tolerance with unset fields taken from ``base``."""
        return Tolerance(**{
            f: getattr(self, f) if getattr(self, f) is not None else getattr(base, f)
            for f in self.__dataclass_fields__
        })


@spec_type
class Calibration(Mapping):
    samples: PosInt = Field(default=32, description="Calibration samples.")
    data: FilePath = Field(default=None, description="A folder of images, an .npz file or sentences .txt.")
    method: Annotated[Literal["minmax", "entropy", "percentile"], Lower] = Field(default="minmax",
                                                                                 description="Range method.")


# ------------------------------------------------------------------------------------------------ variants


@spec_type
class VariantSpec(Mapping):
    name: Str = Field(description="Variant name.", json_schema_extra={"enum": list(VARIANT_KEYS)})
    verify: Tolerance = Field(default_factory=Tolerance, description="This variant's accuracy gate.")
    # typed per variant (generator/spec/options.py); reads as the mapping the spec gave
    options: Annotated[Any, WithJsonSchema({"type": "object", "description": "Variant options (per variant)."})] = \
        Field(default_factory=dict)

    @field_validator("verify", "options", mode="before")
    @classmethod
    def _none_is_empty(cls, v):
        return {} if v is None else v

    @model_validator(mode="after")
    def _typed_options(self):
        if self.name not in OPTIONS:
            raise fail(f"unknown variant '{self.name}'; known variants: {', '.join(VARIANT_KEYS)}")
        model = OPTIONS[self.name]
        if not isinstance(self.options, model):
            given = dict(self.options.items()) if hasattr(self.options, "items") else self.options  # as written
            from pydantic import TypeAdapter

            from .errors import first_error

            try:
                typed = TypeAdapter(model).validate_python(given)
            except ValidationError as e:
                at, msg = first_error(e, "options")
                raise fail(msg, at=at) from None
            object.__setattr__(self, "options", typed)
        return self


def _variants(v: Any) -> Any:
    if isinstance(v, list):
        if not v:
            raise fail(f"empty; list at least one of {', '.join(VARIANT_KEYS)}")
        return [{"name": x} if isinstance(x, str) else x for x in v]
    return v


def _dims(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise fail(f"expected a mapping, got {kind(v)}")
    out = {}
    for name, r in v.items():
        if not isinstance(name, str) or not DIM_NAME_RE.match(name) or name == "batch":
            raise fail("dim names are identifiers and 'batch' is reserved for the batch dim", at=str(name))
        if not isinstance(r, (list, tuple)) or len(r) != 3:
            raise fail(f"expected [min, opt, max], got {kind(r)}", at=name)
        for j, x in enumerate(r):
            if isinstance(x, bool) or not isinstance(x, int):
                raise fail(f"expected an integer, got {kind(x)}", at=f"{name}[{j}]")
            if x < 1:
                raise fail(f"must be >= 1, got {x}", at=f"{name}[{j}]")
        lo, opt, hi = r
        if not lo <= opt <= hi:
            raise fail(f"need min <= opt <= max, got [{lo}, {opt}, {hi}]", at=name)
        out[name] = (lo, opt, hi)
    return out


def _model_name(v: Any) -> Any:
    if not isinstance(v, str) or not v:
        raise fail(f"expected a non-empty string, got {kind(v)}")
    if not NAME_RE.match(v):
        raise fail(f"'{v}' is not a valid Triton model name; use only letters, digits, '_' and '-'")
    if "__" in v:
        raise fail(f"'{v}' contains '__', which tritongen uses to join model and variant; use a single '_'")
    return v


def _nonempty(v: Any) -> Any:
    if isinstance(v, list) and not v:
        raise fail("empty; declare at least one tensor")
    return v


def _preprocess(v: Any) -> Any:
    """The ``preprocess:`` section, typed (what it is read into follows once the inputs are known)."""
    if v in ({}, None) or isinstance(v, (PreprocessSection, ImagePreprocess, TextPreprocess)):
        return v or None
    from pydantic import TypeAdapter

    from .errors import first_error

    try:
        return TypeAdapter(PreprocessSection).validate_python(v)
    except ValidationError as e:
        at, msg = first_error(e)
        raise fail(msg, at=at or None) from None


# the section as written, then (after the model's checks) the ImagePreprocess / TextPreprocess it was read into
_PREPROCESS = Annotated[Any, BeforeValidator(_preprocess), WithJsonSchema({"x-ref": "PreprocessSection"})]


@spec_type(kw_only=True)
class ModelSpec(Mapping):
    name: Annotated[str, BeforeValidator(_model_name), WithJsonSchema(
        {"type": "string", "pattern": NAME_RE.pattern})] = Field(description="Triton model name (letters, digits, "
                                                                             "_ and -; no '__').")
    source: Source = Field(description="Where the PyTorch model comes from: exactly one source kind.")
    inputs: Annotated[tuple[InputSpec, ...], BeforeValidator(_nonempty)] = Field(
        description="Input tensors, in forward() order (inferred for huggingface sources).")
    outputs: Annotated[tuple[OutputSpec, ...], BeforeValidator(_nonempty)] = Field(
        description="Output tensors, in the order forward() returns them.")
    dims: Annotated[dict, BeforeValidator(_dims), WithJsonSchema(
        {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                                    "minItems": 3, "maxItems": 3}})] = Field(
        default_factory=dict, description="Named dims: {name: [min, opt, max]}; 'batch' is reserved.")  # -> (min, opt, max)
    max_batch_size: Annotated[int, Field(strict=True, ge=0, le=2**31 - 1)] = Field(
        description="Triton max_batch_size (an int32); 0 disables batching.")
    variants: Annotated[tuple[VariantSpec, ...], BeforeValidator(_variants)] = Field(
        default=(VariantSpec("onnx"),), description="What to build: variant names or {name, verify, options}.")
    preferred_variant: Optional[Str] = Field(default=None, description="The variant the model's ensemble "
                                             "(preprocess / tokenizer) routes to (default: the first variant).")
    calibration: Calibration = Field(default_factory=Calibration, description="INT8 calibration data.")
    verify: Tolerance = Field(default_factory=Tolerance, description="Accuracy gate for every variant (a variant's "
                                                                     "own verify wins).")
    triton: TritonSpec = Field(default_factory=TritonSpec, description="What goes into config.pbtxt beyond tensors.")
    opset: Optional[Annotated[int, Field(strict=True, ge=7, le=23)]] = Field(default=None, description=(
        "ONNX opset (default 20; 23 is the highest torch's exporter writes, 21 the highest Triton 24.10's "
        "onnxruntime 1.19 reads)."))
    preprocess: _PREPROCESS = Field(default=None, description="CPU preprocessing + an ensemble: image "
                                                                        "bytes or strings in.")
    tune: TuneSettings = Field(default_factory=TuneSettings, description="tritongen tune's search space and goal "
                                                                         "for this model.")
    raw: dict = internal(factory=dict)  # the merged, validated model mapping (for hashing)
    index: int = internal(0)
    derived_dims: tuple = internal(())  # named dims only outputs use: rendered -1, checked against PyTorch's shapes

    @field_validator("calibration", "verify", "triton", "tune", mode="before")
    @classmethod
    def _none_is_empty(cls, v):
        return {} if v is None else v

    @model_validator(mode="after")
    def _cross_checks(self, info: ValidationInfo):
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen: the reader's own fills)
        names = [t.name for t in self.inputs + self.outputs]
        dup = next((n for n in names if names.count(n) > 1), None)
        if dup:
            raise fail(f"tensor name '{dup}' is used twice; input and output names must be unique")
        dims = dict(self.dims)
        for kind_, tensors in (("inputs", self.inputs), ("outputs", self.outputs)):
            for i, t in enumerate(tensors):
                for j, d in enumerate(t.shape):
                    if isinstance(d, str) and d not in dims and d not in self.derived_dims:
                        raise fail(f"dim '{d}' is not declared; add it under dims: {{{d}: [min, opt, max]}}",
                                   at=f"{kind_}[{i}].shape[{j}]")
        used_in = {d for t in self.inputs for d in t.shape if isinstance(d, str)}
        used_out = {d for t in self.outputs for d in t.shape if isinstance(d, str)}
        unused = [d for d in dims if d not in used_in | used_out]
        if unused:
            raise fail("declared but no input shape uses it; use it in a shape or remove it", at=f"dims.{unused[0]}")
        derived = tuple(d for d in dims if d not in used_in)
        if derived:  # follows the inputs through the model (wav2vec2 frames): rendered -1, shape checked by PyTorch
            set_("derived_dims", self.derived_dims + derived)
            set_("dims", {k: v for k, v in dims.items() if k not in derived})
            set_("outputs", tuple(_derive(t, derived) for t in self.outputs))
        self._check_sample_size()
        keys = [v.name for v in self.variants]
        for i, n in enumerate(keys):
            if n in keys[:i]:
                raise fail(f"variant '{n}' is listed twice", at=f"variants[{i}]")
        if self.preferred_variant is not None and self.preferred_variant not in keys:
            raise fail(f"'{self.preferred_variant}' is not in this model's variants ({', '.join(keys)})",
                       at="preferred_variant")
        self._check_batching()
        if isinstance(self.preprocess, PreprocessSection):
            pre = self.preprocess
            if pre.variant is not None and pre.variant not in keys:
                raise fail(f"'{pre.variant}' is not in this model's variants", at="preprocess.variant")
            try:
                set_("preprocess", resolve_preprocess(pre, self.inputs, self.source, _root(info), _where(info)))
            except PydanticCustomError as e:
                at = e.context.get("at")
                raise fail(e.context["msg"], at=f"preprocess.{at}" if at else "preprocess") from None
            if isinstance(self.preprocess, ImagePreprocess):  # the image input's format follows from the layout
                set_("inputs", self._with_format(self.preprocess))
        return self

    def _with_format(self, pre: ImagePreprocess) -> tuple:
        want, out = f"FORMAT_{pre.layout}", []
        for i, t in enumerate(self.inputs):
            if t.name == pre.input:
                if t.format not in (None, want):
                    raise fail(f"{t.format} but preprocess.image.layout is {pre.layout}; make them agree",
                               at=f"inputs[{i}].format")
                t = dataclasses.replace(t, format=want)
            out.append(t)
        return tuple(out)

    def _check_batching(self) -> None:
        db, mbs = self.triton.dynamic_batching, self.max_batch_size
        if db is None:
            return
        if mbs == 0:
            if db != type(db)():
                raise fail("needs max_batch_size > 0; set max_batch_size or remove dynamic_batching",
                           at="triton.dynamic_batching")
            object.__setattr__(self.triton, "dynamic_batching", None)
            return
        for j, p in enumerate(db.preferred_batch_size):
            if p > mbs:
                raise fail(f"{p} > max_batch_size {mbs}; lower it or raise max_batch_size",
                           at=f"triton.dynamic_batching.preferred_batch_size[{j}]")

    @property
    def where(self) -> str:
        return f"models[{self.index}]"

    @property
    def ensemble_variant(self) -> str:
        """The variant the ensemble routes to: ``preprocess.variant``, else ``preferred_variant``, else the first."""
        pre = getattr(self.preprocess, "variant", None)
        return pre or self.preferred_variant or self.variants[0].name

    def _check_sample_size(self) -> None:
        """One sample's inputs (at the dims' max) must fit in a request: gRPC carries at most 2 GiB, and the build
        makes batches of them in memory to export and verify."""
        top = {k: v[2] for k, v in self.dims.items()}
        sizes = [(t, math.prod(t.concrete(top)) * t.dtype.itemsize) for t in self.inputs]
        if sum(n for _, n in sizes) > 2**31:
            t, n = max(sizes, key=lambda x: x[1])
            shape = "x".join(str(d) for d in t.concrete(top))
            i = self.inputs.index(t)
            raise fail(f"one sample is {sum(n for _, n in sizes) / 2**30:.1f} GiB (input '{t.name}' {shape} {t.dtype.name}"
                       f"{' at the dims max' if self.dims else ''}), over the 2 GiB a gRPC request can carry; check "
                       "the shape (no batch dim) and dims", at=f"inputs[{i}].shape")

    def dims_at(self, which: str) -> dict[str, int]:
        """Named dims at 'min' | 'opt' | 'max'."""
        i = {"min": 0, "opt": 1, "max": 2}[which]
        return {k: v[i] for k, v in self.dims.items()}

    def spec_hash(self) -> str:
        return hashlib.sha256(json.dumps(self.raw, sort_keys=True, default=str).encode()).hexdigest()

    def artifact_hash(self) -> str:
        """What the artifacts depend on: not `triton:` or `preprocess:` (those only change configs)."""
        keys = ("source", "inputs", "outputs", "dims", "max_batch_size", "opset", "calibration", "verify")
        part = {k: self.raw.get(k) for k in keys}
        for k in ("inputs", "outputs"):  # format and labels only change configs
            if isinstance(part[k], list):
                part[k] = [{a: b for a, b in t.items() if a not in ("format", "labels")} if isinstance(t, dict) else t
                           for t in part[k]]
        return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


def _derive(t: OutputSpec, derived: tuple) -> OutputSpec:
    if not any(d in derived for d in t.shape):
        return t
    shape = tuple(-1 if d in derived else d for d in t.shape)
    return OutputSpec(name=t.name, dtype=t.dtype, shape=shape, key=t.key, labels=t.labels)


@spec_type
class Spec:
    path: Path
    models: tuple[ModelSpec, ...]
    triton_version: Optional[str] = None  # top-level `triton_version:` (generator/tables/releases.py); None = the default

    @property
    def root(self) -> Path:
        return self.path.parent

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise UserError(f"--only {name}: no model of that name in {self.path.name}; known: {known}")


@spec_type
class SpecFile(Mapping):
    """The top level of a spec file (what the reader checks before each model)."""

    models: Annotated[list[Any], WithJsonSchema({"type": "array", "items": {"x-ref": "ModelSpec"},
                                                 "minItems": 1})] = Field(
        description="The models to build, each a mapping.")
    defaults: Annotated[Optional[dict], WithJsonSchema({"x-ref": "defaults"})] = Field(
        default=None, description="Any model key but name; a model's own value wins (mappings merge one level deep).")
    triton_version: Optional[Str] = Field(
        default=None, description='The Triton release the repository targets (e.g. "24.10"; generator/tables/releases.py); '
                                  'default the newest known.')
