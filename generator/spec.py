"""The spec file: what the user asked for, validated into frozen dataclasses.

Every error names the field path (``models[0].inputs[1].dtype``) and says what to do.
Unknown keys are errors. ``defaults:`` at top level may hold any model key; a model's own
value wins (dicts are merged one level deep, so ``triton: {warmup: false}`` in a model keeps
the default's ``dynamic_batching``).
"""

from __future__ import annotations

import copy
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import dtypes
from .errors import UserError

NAME_RE = re.compile(r"^[A-Za-z0-9_-]+$")
TENSOR_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_.:/-]*$")
INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


# --------------------------------------------------------------------------- dataclasses


@dataclass(frozen=True)
class TensorSpec:
    name: str
    dtype: dtypes.DType
    shape: tuple  # ints and named-dim strings, no batch dim
    range: tuple | None = None  # (low, high) for integer inputs, high exclusive
    key: str | int | None = None  # outputs: the dict key / tuple index forward() returns it under

    def concrete(self, dims: dict[str, int]) -> tuple[int, ...]:
        return tuple(d if isinstance(d, int) else dims[d] for d in self.shape)

    def triton_dims(self) -> list[int]:
        return [d if isinstance(d, int) else -1 for d in self.shape]


@dataclass(frozen=True)
class Source:
    kind: str  # factory | torchscript | exported_program | pickle
    factory: str | None = None
    kwargs: dict = field(default_factory=dict)
    checkpoint: Path | None = None
    state_dict_key: str | None = None
    strip_prefix: str | None = None
    path: Path | None = None  # torchscript / exported_program / pickle file
    trust: bool = False

    def files(self) -> list[Path]:
        if self.kind == "huggingface":  # a folder: its config, weights and pooling files
            from .hf import source_files

            return source_files(self.path, self.trust)
        return [p for p in (self.checkpoint, self.path) if p is not None]


TASKS = ("generic", "classification", "embedding")


@dataclass(frozen=True)
class Tolerance:
    """Accuracy gate. Element-wise (atol/rtol), cosine, and task metrics over the verification set:
    classification -> top-1 agreement and top-5 overlap with PyTorch; embedding -> mean cosine."""

    atol: float | None = None
    rtol: float | None = None
    min_cosine: float | None = None
    task: str | None = None
    min_top1: float | None = None  # fraction of samples whose top-1 class equals PyTorch's
    min_top5: float | None = None  # mean overlap of the top-5 sets
    min_mean_cosine: float | None = None
    samples: int | None = None  # size of the task-metric set (calibration data or random)
    data: Path | None = None  # a separate verification set (.npz or image folder) for the task metrics
    # the classification gate of issue 21 (generator/gate.py, gate_data.py)
    accuracy_ratio: float | None = None  # with labels: accuracy >= ratio x fp32's (top-1, top-5); (0, 1]
    min_confident_agreement: float | None = None  # without labels: top-1 agreement where fp32 is confident
    confidence: float | None = None  # fp32 top-1 softmax probability that makes a sample confident; [0, 1]
    min_confident_samples: int | None = None  # fewer confident samples: the gate refuses to decide; >= 1
    labels: Path | None = None  # one integer label per line, in sample order
    reuse_calibration: bool | None = None  # verify on the calibration samples (default: never)

    def over(self, base: "Tolerance") -> "Tolerance":
        """This tolerance with unset fields taken from ``base``."""
        return Tolerance(**{
            f: getattr(self, f) if getattr(self, f) is not None else getattr(base, f)
            for f in self.__dataclass_fields__
        })


@dataclass(frozen=True)
class VariantSpec:
    name: str
    verify: Tolerance = Tolerance()
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Calibration:
    samples: int = 32
    data: Path | None = None
    method: str = "minmax"


@dataclass(frozen=True)
class ImagePreprocess:
    """CPU image preprocessing: decode JPEG/PNG bytes, RGB, resize, scale to [0,1], normalise."""

    size: tuple[int, int]  # (height, width)
    mean: tuple[float, ...] = (0.485, 0.456, 0.406)
    std: tuple[float, ...] = (0.229, 0.224, 0.225)
    layout: str = "NCHW"
    input: str = ""  # the model input it feeds (the first input by default)
    variant: str | None = None  # the variant the ensemble feeds (default: the first one written)
    instances: int = 2  # preprocessing instances (KIND_CPU)


@dataclass(frozen=True)
class DynamicBatching:
    preferred_batch_size: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0
    preserve_ordering: bool = False
    priority_levels: int = 0  # 0 = no priorities
    default_priority_level: int = 0
    default_queue_policy: dict | None = None  # {timeout_action, default_timeout_microseconds, allow_timeout_override, max_queue_size}
    priority_queue_policy: dict = field(default_factory=dict)  # {level: queue policy}


@dataclass(frozen=True)
class InstanceGroup:
    count: int = 1
    kind: str = "KIND_CPU"
    gpus: tuple[int, ...] = ()
    profile: tuple[str, ...] = ()


@dataclass(frozen=True)
class TritonSpec:
    dynamic_batching: DynamicBatching | None = DynamicBatching()
    instance_group: tuple[InstanceGroup, ...] = ()
    warmup: bool = True
    version_policy: dict | None = None  # {"latest": {"num_versions": n}} | {"all": {}} | {"specific": {...}}
    parameters: dict = field(default_factory=dict)
    intra_op_threads: int = 0  # 0 = runtime default
    # native backend settings, as the backend's own parameter names and string values:
    # {"onnxruntime": {...}, "openvino": {...}, "pytorch": {...}}; onnxruntime's "graph_level" is optimization.graph.level
    backend: dict = field(default_factory=dict)
    response_cache: bool = False
    rate_limiter: dict | None = None  # {"resources": [{"name", "count", "global"}], "priority": n}


@dataclass(frozen=True)
class ModelSpec:
    name: str
    source: Source
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dims: dict  # name -> (min, opt, max)
    max_batch_size: int
    variants: tuple[VariantSpec, ...]
    calibration: Calibration
    verify: Tolerance
    triton: TritonSpec
    opset: int | None
    preprocess: "ImagePreprocess | None"
    raw: dict  # the merged, validated model mapping (for hashing)
    index: int

    @property
    def where(self) -> str:
        return f"models[{self.index}]"

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
        return hashlib.sha256(json.dumps(part, sort_keys=True, default=str).encode()).hexdigest()


@dataclass(frozen=True)
class Spec:
    path: Path
    models: tuple[ModelSpec, ...]

    @property
    def root(self) -> Path:
        return self.path.parent

    def model(self, name: str) -> ModelSpec:
        for m in self.models:
            if m.name == name:
                return m
        known = ", ".join(m.name for m in self.models)
        raise UserError(f"--only {name}: no model of that name in {self.path.name}; known: {known}")


# --------------------------------------------------------------------------- reading helpers


class _Fields:
    """A mapping being read at ``where``: typed getters and an unknown-key check."""

    def __init__(self, value: Any, where: str, allowed: tuple[str, ...]):
        if not isinstance(value, dict):
            raise UserError(f"{where}: expected a mapping, got {_kind(value)}")
        unknown = [k for k in value if k not in allowed]
        if unknown:
            raise UserError(
                f"{where}.{unknown[0]}: unknown key; allowed keys here: {', '.join(allowed)}"
            )
        self.value = value
        self.where = where

    def path(self, key: str) -> str:
        return f"{self.where}.{key}"

    def get(self, key: str, default: Any = None) -> Any:
        return self.value.get(key, default)

    def has(self, key: str) -> bool:
        return key in self.value

    def str(self, key: str, default: str | None = None, required: bool = False) -> str | None:
        if key not in self.value:
            if required:
                raise UserError(f"{self.path(key)}: missing; add it")
            return default
        v = self.value[key]
        if not isinstance(v, str) or not v:
            raise UserError(f"{self.path(key)}: expected a non-empty string, got {_kind(v)}")
        return v

    def int(self, key: str, default: int | None = None, minimum: int | None = None, required=False):
        if key not in self.value:
            if required:
                raise UserError(f"{self.path(key)}: missing; add it")
            return default
        return _int(self.value[key], self.path(key), minimum)

    def float(self, key: str, default: float | None = None) -> float | None:
        if key not in self.value:
            return default
        v = self.value[key]
        if isinstance(v, str):  # PyYAML reads 1e-4 (no dot) as a string
            try:
                v = float(v)
            except ValueError:
                pass
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v < 0:
            raise UserError(f"{self.path(key)}: expected a non-negative number, got {v!r}")
        return float(v)

    def bool(self, key: str, default: bool) -> bool:
        if key not in self.value:
            return default
        v = self.value[key]
        if not isinstance(v, bool):
            raise UserError(f"{self.path(key)}: expected true or false, got {v!r}")
        return v

    def list(self, key: str, default=None, required=False) -> list:
        if key not in self.value:
            if required:
                raise UserError(f"{self.path(key)}: missing; add it")
            return [] if default is None else default
        v = self.value[key]
        if not isinstance(v, list):
            raise UserError(f"{self.path(key)}: expected a list, got {_kind(v)}")
        return v

    def dict(self, key: str) -> dict:
        v = self.value.get(key, {})
        if v is None:
            return {}
        if not isinstance(v, dict):
            raise UserError(f"{self.path(key)}: expected a mapping, got {_kind(v)}")
        return v


def _kind(v: Any) -> str:
    if v is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"the string {v!r}"}.get(type(v), repr(v))


def _int(v: Any, where: str, minimum: int | None = None) -> int:
    if isinstance(v, bool) or not isinstance(v, int):
        raise UserError(f"{where}: expected an integer, got {_kind(v)}")
    if minimum is not None and v < minimum:
        raise UserError(f"{where}: must be >= {minimum}, got {v}")
    return v


# --------------------------------------------------------------------------- the parser

MODEL_KEYS = (
    "name", "source", "inputs", "outputs", "dims", "max_batch_size", "variants",
    "calibration", "verify", "triton", "opset", "preprocess", "tune",
)
SOURCE_KEYS = (
    "factory", "kwargs", "checkpoint", "state_dict_key", "strip_prefix",
    "torchscript", "exported_program", "pickle",
    "huggingface", "task", "pooling", "normalize", "trust",  # source: {huggingface: DIR} (generator/hf.py)
)


def load_spec(path: str | Path, known_variants: tuple[str, ...] | None = None) -> Spec:
    """Read and validate a YAML spec. Raises UserError naming the field."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: spec file not found; pass the path to your spec YAML")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise UserError(f"{path}:{line}: not UTF-8 text (byte 0x{e.object[e.start]:02x} at offset {e.start}); "
                        "save the spec as UTF-8")
    except OSError as e:
        raise UserError(f"{path}: cannot read the spec ({e.strerror or type(e).__name__}); check the file's permissions")
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise UserError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax")
    return parse_spec(data, path.resolve(), known_variants)


def parse_spec(data: Any, path: Path, known_variants: tuple[str, ...] | None = None) -> Spec:
    if known_variants is None:
        from .variants import REGISTRY

        known_variants = tuple(REGISTRY)
    top = _Fields(data if data is not None else {}, "spec", ("models", "defaults"))
    defaults = top.dict("defaults")
    bad = [k for k in defaults if k not in MODEL_KEYS or k == "name"]
    if bad:
        raise UserError(
            f"defaults.{bad[0]}: not a model key that can have a default; "
            f"allowed: {', '.join(k for k in MODEL_KEYS if k != 'name')}"
        )
    raw_models = top.list("models", required=True)
    if not raw_models:
        raise UserError("models: empty; add at least one model")
    models = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_models):
        where = f"models[{i}]"
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping, got {_kind(raw)}")
        merged = _merge(defaults, raw)
        m = _model(merged, where, i, path.parent, known_variants)
        if m.name in seen:
            raise UserError(
                f"{where}.name: '{m.name}' is already used by models[{seen[m.name]}]; names must be unique"
            )
        seen[m.name] = i
        models.append(m)
    return Spec(path=path, models=tuple(models))


def _merge(defaults: dict, model: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in model.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def _model(raw: dict, where: str, index: int, root: Path, known_variants) -> ModelSpec:
    if isinstance(raw.get("source"), dict) and "huggingface" in raw["source"]:
        from .hf import fill_model  # inputs/outputs/dims the spec omits, from config.json

        raw = fill_model(raw, where, root)
    f = _Fields(raw, where, MODEL_KEYS)
    name = f.str("name", required=True)
    if not NAME_RE.match(name):
        raise UserError(
            f"{where}.name: '{name}' is not a valid Triton model name; use only letters, digits, '_' and '-'"
        )
    if "__" in name:
        raise UserError(f"{where}.name: '{name}' contains '__', which tritongen uses to join model and variant; use a single '_'")
    dims = _dims(f.dict("dims"), f.path("dims"))
    mbs = f.int("max_batch_size", default=None, minimum=0)
    if mbs is None:
        raise UserError(f"{where}.max_batch_size: missing; set it (0 disables batching)")
    inputs = _tensors(f.list("inputs", required=True), f.path("inputs"), dims, is_input=True)
    outputs = _tensors(f.list("outputs", required=True), f.path("outputs"), dims, is_input=False)
    names = [t.name for t in inputs + outputs]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup:
        raise UserError(f"{where}: tensor name '{dup}' is used twice; input and output names must be unique")
    used = {d for t in inputs for d in t.shape if isinstance(d, str)}
    unused = [d for d in dims if d not in used]
    if unused:
        raise UserError(f"{where}.dims.{unused[0]}: declared but no input shape uses it; use it in a shape or remove it")
    variants = _variants(f.list("variants", default=["onnx"]), f.path("variants"), known_variants, root)
    triton = _triton(f.dict("triton"), f.path("triton"), mbs)
    pre_variant = f.dict("preprocess").get("variant")
    if pre_variant is not None and pre_variant not in [v.name for v in variants]:
        raise UserError(f"{where}.preprocess.variant: '{pre_variant}' is not in this model's variants")
    opset = f.int("opset", default=None, minimum=7)
    if f.has("tune"):  # tritongen tune's search space: checked now, used by perf/tune.py
        from .tunespec import parse_tune

        parse_tune(f.get("tune"), f.path("tune"))
    return ModelSpec(
        name=name,
        source=_source(f.get("source"), f.path("source"), root),
        inputs=inputs,
        outputs=outputs,
        dims=dims,
        max_batch_size=mbs,
        variants=variants,
        calibration=_calibration(f.dict("calibration"), f.path("calibration"), root),
        verify=_tolerance(f.dict("verify"), f.path("verify"), root),
        triton=triton,
        opset=opset,
        preprocess=_preprocess(f.dict("preprocess"), f.path("preprocess"), inputs, root, f.get("source")),
        raw=raw,
        index=index,
    )


def _source(raw: Any, where: str, root: Path) -> Source:
    if raw is None:
        raise UserError(f"{where}: missing; give one of factory (+checkpoint), torchscript, exported_program, pickle")
    f = _Fields(raw, where, SOURCE_KEYS)
    if f.has("huggingface"):
        return _hf_source(f, where, root)
    hf_only = [k for k in ("task", "pooling", "normalize", "trust") if f.has(k)]
    if hf_only:
        raise UserError(f"{where}.{hf_only[0]}: only used with huggingface; remove it")
    kinds = [k for k in ("factory", "torchscript", "exported_program", "pickle") if f.has(k)]
    if len(kinds) != 1:
        got = " and ".join(kinds) if kinds else "none"
        raise UserError(f"{where}: give exactly one of factory, torchscript, exported_program, pickle (got {got})")
    kind = kinds[0]
    if kind != "factory":
        extra = [k for k in ("kwargs", "checkpoint", "state_dict_key", "strip_prefix") if f.has(k)]
        if extra:
            raise UserError(f"{where}.{extra[0]}: only used with factory; remove it for a {kind} source")
    if kind == "factory":
        fac = f.str("factory")
        if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", fac):
            raise UserError(f"{where}.factory: '{fac}' is not 'module:callable' (e.g. examples.vit:vit_b16)")
        ckpt = None
        if f.has("checkpoint"):
            ckpt = _file(f.str("checkpoint"), f.path("checkpoint"), root, must_exist=False)
            if ckpt.suffix not in CHECKPOINT_SUFFIXES:
                raise UserError(
                    f"{where}.checkpoint: '{ckpt.name}' has an unknown suffix; use one of {', '.join(CHECKPOINT_SUFFIXES)}"
                )
        kwargs = f.dict("kwargs")
        return Source(
            kind="factory",
            factory=fac,
            kwargs=kwargs,
            checkpoint=ckpt,
            state_dict_key=f.str("state_dict_key"),
            strip_prefix=f.str("strip_prefix"),
        )
    if kind == "pickle":
        p = _Fields(f.get("pickle"), f.path("pickle"), ("path", "trust"))
        trust = p.bool("trust", False)
        if not trust:
            raise UserError(
                f"{where}.pickle.trust: loading a full pickle runs arbitrary code; set trust: true only for files "
                "you made yourself, or save a state_dict and use factory + checkpoint"
            )
        return Source(kind="pickle", path=_file(p.str("path", required=True), p.path("path"), root), trust=True)
    return Source(kind=kind, path=_file(f.str(kind), f.path(kind), root, must_exist=False))


def _hf_source(f: "_Fields", where: str, root: Path) -> Source:
    other = [k for k in ("factory", "torchscript", "exported_program", "pickle", "kwargs", "checkpoint",
                         "state_dict_key", "strip_prefix") if f.has(k)]
    if other:
        raise UserError(f"{where}.{other[0]}: not used with huggingface; give one source kind")
    from .hf import read_source

    info = read_source(f.value, where, root)
    return Source(kind="huggingface", path=info.folder, trust=info.trust)


def _file(value: str, where: str, root: Path, must_exist: bool = True) -> Path:
    p = (root / value).resolve()
    if must_exist and not p.is_file():
        raise UserError(f"{where}: file '{value}' not found (paths are relative to the spec file's folder)")
    return p


def _dims(raw: dict, where: str) -> dict:
    out = {}
    for name, v in raw.items():
        w = f"{where}.{name}"
        if not isinstance(name, str) or not re.match(r"^[A-Za-z_]\w*$", name) or name == "batch":
            raise UserError(f"{w}: dim names are identifiers and 'batch' is reserved for the batch dim")
        if not isinstance(v, list) or len(v) != 3:
            raise UserError(f"{w}: expected [min, opt, max], got {_kind(v)}")
        lo, opt, hi = (_int(x, f"{w}[{j}]", minimum=1) for j, x in enumerate(v))
        if not lo <= opt <= hi:
            raise UserError(f"{w}: need min <= opt <= max, got [{lo}, {opt}, {hi}]")
        out[name] = (lo, opt, hi)
    return out


def _tensors(raw: list, where: str, dims: dict, is_input: bool) -> tuple[TensorSpec, ...]:
    if not raw:
        raise UserError(f"{where}: empty; declare at least one tensor")
    out = []
    for i, t in enumerate(raw):
        w = f"{where}[{i}]"
        f = _Fields(t, w, ("name", "dtype", "shape", "range") if is_input else ("name", "dtype", "shape", "key"))
        name = f.str("name", required=True)
        if not TENSOR_NAME_RE.match(name):
            raise UserError(f"{w}.name: '{name}' is not a valid tensor name; start with a letter or '_'")
        dt = f.str("dtype", required=True)
        if dt not in dtypes.BY_NAME:
            raise UserError(f"{w}.dtype: '{dt}' is not one of {', '.join(dtypes.NAMES)}")
        dtype = dtypes.BY_NAME[dt]
        shape = f.list("shape", required=True)
        norm = []
        for j, d in enumerate(shape):
            if isinstance(d, str):
                if d not in dims:
                    raise UserError(f"{w}.shape[{j}]: dim '{d}' is not declared; add it under dims: {{{d}: [min, opt, max]}}")
                norm.append(d)
            elif d == -1 and not is_input and not isinstance(d, bool):
                norm.append(-1)  # an output dim that follows no input (frames from samples, detections)
            elif d == -1 and not isinstance(d, bool):
                raise UserError(f"{w}.shape[{j}]: -1 is for outputs only; give a dynamic input dim a name and "
                                f"declare it under dims: {{name: [min, opt, max]}}")
            else:
                norm.append(_int(d, f"{w}.shape[{j}]", minimum=1))
        rng = None
        if f.has("range"):
            r = f.get("range")
            if dtype.is_float:
                raise UserError(f"{w}.range: only integer inputs take a range; remove it")
            if not isinstance(r, list) or len(r) != 2 or not all(isinstance(x, int) for x in r) or r[0] >= r[1]:
                raise UserError(f"{w}.range: expected [low, high] integers with low < high (high exclusive)")
            rng = (r[0], r[1])
        key = None
        if f.has("key"):
            key = f.get("key")
            if isinstance(key, bool) or not isinstance(key, (str, int)) or key == "":
                raise UserError(f"{w}.key: expected the dict key (a string) or tuple index (an integer) "
                                f"forward() returns this output under, got {_kind(key)}")
        out.append(TensorSpec(name=name, dtype=dtype, shape=tuple(norm), range=rng, key=key))
    return tuple(out)


def _tolerance(raw: dict, where: str, root: Path | None = None) -> Tolerance:
    f = _Fields(raw, where, ("atol", "rtol", "min_cosine", "task", "min_top1", "min_top5", "min_mean_cosine", "samples",
                             "data") + GATE_KEYS)
    task = f.str("task")
    if task is not None and task not in TASKS:
        raise UserError(f"{where}.task: '{task}' is not one of {', '.join(TASKS)}")
    fractions = {}
    for k in ("min_cosine", "min_top1", "min_top5", "min_mean_cosine"):
        v = f.float(k)
        if v is not None and v > 1:
            raise UserError(f"{where}.{k}: {v} is above 1; give a fraction (e.g. 0.99)")
        fractions[k] = v
    data = (Path(root or ".") / f.str("data")).resolve() if f.has("data") else None
    return Tolerance(atol=f.float("atol"), rtol=f.float("rtol"), task=task,
                     samples=f.int("samples", None, minimum=1), data=data, **fractions, **_gate_keys(f, where, root))


GATE_KEYS = ("accuracy_ratio", "min_confident_agreement", "confidence", "min_confident_samples", "labels",
             "reuse_calibration")


def _gate_keys(f: "_Fields", where: str, root: Path | None) -> dict:
    """verify's classification-gate keys (issue 21)."""
    out = {}
    for k in ("accuracy_ratio", "min_confident_agreement", "confidence"):
        v = f.float(k)
        if v is not None and v > 1:
            raise UserError(f"{where}.{k}: {v} is above 1; give a fraction (e.g. 0.99)")
        out[k] = v
    if out["accuracy_ratio"] == 0:
        raise UserError(f"{where}.accuracy_ratio: must be above 0 (MLPerf's rule is 0.99)")
    out["min_confident_samples"] = f.int("min_confident_samples", None, minimum=1)
    out["labels"] = (Path(root or ".") / f.str("labels")).resolve() if f.has("labels") else None
    out["reuse_calibration"] = f.bool("reuse_calibration", None)
    return out


def _variants(raw: list, where: str, known: tuple[str, ...], root: Path | None = None) -> tuple[VariantSpec, ...]:
    if not raw:
        raise UserError(f"{where}: empty; list at least one of {', '.join(known)}")
    out = []
    for i, v in enumerate(raw):
        w = f"{where}[{i}]"
        if isinstance(v, str):
            v = {"name": v}
        f = _Fields(v, w, ("name", "verify", "options"))
        name = f.str("name", required=True)
        if name not in known:
            raise UserError(f"{w}: unknown variant '{name}'; known variants: {', '.join(known)}")
        if any(o.name == name for o in out):
            raise UserError(f"{w}: variant '{name}' is listed twice")
        out.append(VariantSpec(name=name, verify=_tolerance(f.dict("verify"), f.path("verify"), root),
                               options=f.dict("options")))
    return tuple(out)


def _calibration(raw: dict, where: str, root: Path) -> Calibration:
    f = _Fields(raw, where, ("samples", "data", "method"))
    data = None
    if f.has("data"):
        data = (root / f.str("data")).resolve()
    method = f.str("method", "minmax").lower()
    if method not in ("minmax", "entropy", "percentile"):
        raise UserError(f"{where}.method: '{method}' is not one of minmax, entropy, percentile")
    return Calibration(samples=f.int("samples", 32, minimum=1), data=data, method=method)


def _triton(raw: dict, where: str, mbs: int) -> TritonSpec:
    f = _Fields(raw, where, ("dynamic_batching", "instance_group", "warmup", "version_policy", "parameters", "intra_op_threads",
                             "backend", "response_cache", "rate_limiter"))
    db: DynamicBatching | None = None
    if f.get("dynamic_batching") is not False and mbs > 0:
        d = _Fields(f.dict("dynamic_batching"), f.path("dynamic_batching"),
                    ("preferred_batch_size", "max_queue_delay_microseconds", "preserve_ordering", "priority_levels",
                     "default_priority_level", "default_queue_policy", "priority_queue_policy"))
        pref = tuple(_int(x, f"{d.path('preferred_batch_size')}[{j}]", minimum=1)
                     for j, x in enumerate(d.list("preferred_batch_size")))
        for j, p in enumerate(pref):
            if p > mbs:
                raise UserError(
                    f"{d.path('preferred_batch_size')}[{j}]: {p} > max_batch_size {mbs}; lower it or raise max_batch_size"
                )
        db = DynamicBatching(
            preferred_batch_size=pref,
            max_queue_delay_microseconds=d.int("max_queue_delay_microseconds", 0, minimum=0),
            preserve_ordering=d.bool("preserve_ordering", False),
            **_priorities(d),
        )
    elif f.has("dynamic_batching") and f.get("dynamic_batching") not in (False, None, {}) and mbs == 0:
        raise UserError(f"{where}.dynamic_batching: needs max_batch_size > 0; set max_batch_size or remove dynamic_batching")
    groups = []
    for j, g in enumerate(f.list("instance_group")):
        gf = _Fields(g, f"{f.path('instance_group')}[{j}]", ("count", "kind", "gpus", "profile"))
        kind = gf.str("kind", "KIND_CPU")
        if kind not in INSTANCE_KINDS:
            raise UserError(f"{gf.path('kind')}: '{kind}' is not one of {', '.join(INSTANCE_KINDS)}")
        gpus = tuple(_int(x, f"{gf.path('gpus')}[{k}]", minimum=0) for k, x in enumerate(gf.list("gpus")))
        profile = tuple(str(x) for x in gf.list("profile"))
        groups.append(InstanceGroup(count=gf.int("count", 1, minimum=1), kind=kind, gpus=gpus, profile=profile))
    vp = None
    if f.has("version_policy"):
        v = f.get("version_policy")
        vw = f.path("version_policy")
        if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ("latest", "all", "specific"):
            raise UserError(f"{vw}: expected one of {{latest: N}}, {{all: true}}, {{specific: [versions]}}")
        (k, val), = v.items()
        if k == "latest":
            vp = {"latest": {"num_versions": _int(val, f"{vw}.latest", minimum=1)}}
        elif k == "all":
            vp = {"all": {}}
        else:
            if not isinstance(val, list) or not val:
                raise UserError(f"{vw}.specific: expected a non-empty list of version numbers")
            vp = {"specific": {"versions": [_int(x, f"{vw}.specific[{j}]", minimum=1) for j, x in enumerate(val)]}}
    params = {}
    for k, v in f.dict("parameters").items():
        if isinstance(v, (dict, list)) or v is None:
            raise UserError(f"{f.path('parameters')}.{k}: parameter values are strings, numbers or booleans")
        params[str(k)] = str(v).lower() if isinstance(v, bool) else str(v)
    return TritonSpec(
        dynamic_batching=db,
        instance_group=tuple(groups),
        warmup=f.bool("warmup", True),
        version_policy=vp,
        parameters=params,
        intra_op_threads=f.int("intra_op_threads", 0, minimum=0),
        backend=_backend_settings(f.dict("backend"), f.path("backend")),
        response_cache=f.bool("response_cache", False),
        rate_limiter=_rate_limiter(f.dict("rate_limiter"), f.path("rate_limiter")) if f.has("rate_limiter") else None,
    )


# The native backends' settings a spec may give (triton.backend.<backend>), with how a YAML value is written
# for that backend. Values are then checked with the backend's own rule (generator/backend_rules.py).
BACKEND_SETTINGS = {
    "onnxruntime": ("intra_op_thread_count", "inter_op_thread_count", "execution_mode", "enable_mem_arena",
                    "enable_mem_pattern", "graph_level"),
    "openvino": ("NUM_STREAMS", "PERFORMANCE_HINT", "INFERENCE_NUM_THREADS", "ENABLE_BATCH_PADDING", "RESHAPE_IO_LAYERS",
                 "COMPILATION_NUM_THREADS"),
    "pytorch": ("INFERENCE_MODE", "DISABLE_OPTIMIZED_EXECUTION", "INTRA_OP_THREAD_COUNT", "INTER_OP_THREAD_COUNT",
                "ENABLE_JIT_EXECUTOR", "ENABLE_JIT_PROFILING"),
}
ORT_GRAPH_LEVELS = ("disable", "basic", "extended", "all")
ORT_EXECUTION_MODES = {"sequential": "0", "parallel": "1", "0": "0", "1": "1"}


def _backend_value(backend: str, key: str, v: Any, where: str) -> str:
    if isinstance(v, (dict, list)) or v is None:
        raise UserError(f"{where}: expected a string, number or boolean")
    if isinstance(v, bool):
        return {"openvino": "YES" if v else "NO", "onnxruntime": "1" if v else "0"}.get(backend, str(v).lower())
    value = str(v)
    if backend == "onnxruntime" and key == "execution_mode":
        if value.lower() not in ORT_EXECUTION_MODES:
            raise UserError(f"{where}: '{value}' is not sequential or parallel")
        return ORT_EXECUTION_MODES[value.lower()]
    if backend == "openvino" and key in ("PERFORMANCE_HINT", "NUM_STREAMS"):
        return value.upper()
    return value


def _backend_settings(raw: dict, where: str) -> dict:
    from .backend_rules import check_parameter

    f = _Fields(raw, where, tuple(BACKEND_SETTINGS))
    out = {}
    for backend, keys in BACKEND_SETTINGS.items():
        b = _Fields(f.dict(backend), f.path(backend), keys)
        vals = {}
        for k in keys:
            if not b.has(k):
                continue
            if backend == "onnxruntime" and k == "graph_level":
                level = str(b.get(k)).lower()
                if level not in ORT_GRAPH_LEVELS:
                    raise UserError(f"{b.path(k)}: '{level}' is not one of {', '.join(ORT_GRAPH_LEVELS)}")
                vals[k] = level
                continue
            vals[k] = _backend_value(backend, k, b.get(k), b.path(k))
            why = check_parameter(backend, k, vals[k])
            if why:
                raise UserError(f"{b.path(k)}: {why.split(': ', 1)[-1]}")
        if vals:
            out[backend] = vals
    return out


QUEUE_ACTIONS = ("REJECT", "DELAY")


def _queue_policy(raw: dict, where: str) -> dict:
    f = _Fields(raw, where, ("timeout_action", "default_timeout_microseconds", "allow_timeout_override", "max_queue_size"))
    action = f.str("timeout_action", "REJECT").upper()
    if action not in QUEUE_ACTIONS:
        raise UserError(f"{f.path('timeout_action')}: '{action}' is not REJECT or DELAY")
    return {"timeout_action": action,
            "default_timeout_microseconds": f.int("default_timeout_microseconds", 0, minimum=0),
            "allow_timeout_override": f.bool("allow_timeout_override", False),
            "max_queue_size": f.int("max_queue_size", 0, minimum=0)}


def _priorities(d: "_Fields") -> dict:
    levels = d.int("priority_levels", 0, minimum=0)
    default = d.int("default_priority_level", 0, minimum=0)
    if levels and not 1 <= default <= levels:
        raise UserError(f"{d.path('default_priority_level')}: {default} is not in 1..{levels} (priority_levels); set it")
    if default and not levels:
        raise UserError(f"{d.path('default_priority_level')}: needs priority_levels; set priority_levels")
    per_level = {}
    for k, v in d.dict("priority_queue_policy").items():
        lvl = _int(k, f"{d.path('priority_queue_policy')}.{k}", minimum=1)
        if lvl > levels:
            raise UserError(f"{d.path('priority_queue_policy')}.{k}: level {lvl} > priority_levels {levels}")
        per_level[lvl] = _queue_policy(v, f"{d.path('priority_queue_policy')}.{k}")
    policy = _queue_policy(d.dict("default_queue_policy"), d.path("default_queue_policy")) \
        if d.has("default_queue_policy") else None
    return {"priority_levels": levels, "default_priority_level": default, "default_queue_policy": policy,
            "priority_queue_policy": per_level}


def _rate_limiter(raw: dict, where: str) -> dict:
    f = _Fields(raw, where, ("resources", "priority"))
    resources = []
    for j, r in enumerate(f.list("resources")):
        rf = _Fields(r, f"{f.path('resources')}[{j}]", ("name", "count", "global"))
        resources.append({"name": rf.str("name", required=True), "count": rf.int("count", required=True, minimum=1),
                          "global": rf.bool("global", False)})
    return {"resources": resources, "priority": f.int("priority", 0, minimum=0)}


def _preprocess(raw: dict, where: str, inputs, root: Path | None = None, source: Any = None):
    if not raw:
        return None
    if "text" in raw:  # strings -> tokenizer -> model (generator/hf.py)
        from .hf import parse_text_preprocess

        return parse_text_preprocess(raw, where, root, inputs, source)
    f = _Fields(raw, where, ("image", "variant", "instances"))
    img = _Fields(f.dict("image"), f.path("image"), ("size", "mean", "std", "layout", "input"))
    size = img.list("size", required=True)
    if len(size) != 2:
        raise UserError(f"{img.path('size')}: expected [height, width]")
    size = tuple(_int(v, f"{img.path('size')}[{j}]", minimum=1) for j, v in enumerate(size))

    def floats(key, default):
        v = img.list(key, default=list(default))
        if len(v) != 3 or not all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v):
            raise UserError(f"{img.path(key)}: expected three numbers (one per RGB channel)")
        return tuple(float(x) for x in v)

    mean = floats("mean", (0.485, 0.456, 0.406))
    std = floats("std", (0.229, 0.224, 0.225))
    if any(x == 0 for x in std):
        raise UserError(f"{img.path('std')}: must not contain 0")
    layout = img.str("layout", "NCHW")
    if layout not in ("NCHW", "NHWC"):
        raise UserError(f"{img.path('layout')}: '{layout}' is not NCHW or NHWC")
    name = img.str("input", inputs[0].name)
    target = next((t for t in inputs if t.name == name), None)
    if target is None:
        raise UserError(f"{img.path('input')}: '{name}' is not a declared input")
    want = (3, *size) if layout == "NCHW" else (*size, 3)
    if tuple(target.shape) != want or not target.dtype.is_float:
        raise UserError(f"{where}.image: input '{name}' is {list(target.shape)} {target.dtype.name} but "
                        f"{layout} preprocessing to {list(size)} makes {list(want)} float32; make them agree")
    return ImagePreprocess(size=size, mean=mean, std=std, layout=layout, input=name,
                           variant=f.str("variant"), instances=f.int("instances", 2, minimum=1))
