"""``triton:`` — what goes into config.pbtxt beyond the tensors: batching, instances, policies, parameters
and the native backends' own settings (``triton.backend.<backend>``, under each backend's parameter names)."""

from __future__ import annotations

from typing import Annotated, Any, Callable, Literal, Optional

from pydantic import BeforeValidator, Field, WithJsonSchema, field_validator, model_validator

from .base import Bool, Mapping, NonNegInt, PosInt, Str, Upper, fail, kind, spec_type

INSTANCE_KINDS = ("KIND_AUTO", "KIND_CPU", "KIND_GPU")
QUEUE_ACTIONS = ("REJECT", "DELAY")


@spec_type
class QueuePolicy(Mapping):
    timeout_action: Annotated[Literal["REJECT", "DELAY"], Upper] = Field(
        default="REJECT", description="What happens at the timeout.")
    default_timeout_microseconds: NonNegInt = Field(default=0, description="Queue timeout (0 = none).")
    allow_timeout_override: Bool = Field(default=False, description="Requests may set their own timeout.")
    max_queue_size: NonNegInt = Field(default=0, description="Queue bound (0 = unbounded).")

    def as_dict(self) -> dict:
        return {"timeout_action": self.timeout_action, "default_timeout_microseconds": self.default_timeout_microseconds,
                "allow_timeout_override": self.allow_timeout_override, "max_queue_size": self.max_queue_size}


def _policy_dict(v: Any) -> Any:
    return v.as_dict() if isinstance(v, QueuePolicy) else v


@spec_type
class DynamicBatching(Mapping):
    preferred_batch_size: tuple[PosInt, ...] = Field(default=(), description="Preferred batch sizes (<= max_batch_size).")
    max_queue_delay_microseconds: NonNegInt = Field(default=0, description="Queue delay.")
    preserve_ordering: Bool = Field(default=False, description="Keep response order.")
    priority_levels: NonNegInt = Field(default=0, description="Number of request priority levels (0 = none).")
    default_priority_level: NonNegInt = Field(default=0, description="Priority of requests that give none.")
    # as dicts once read: {timeout_action, default_timeout_microseconds, allow_timeout_override, max_queue_size}
    default_queue_policy: Optional[QueuePolicy] = Field(default=None, description="Queue policy of every priority level.")
    priority_queue_policy: dict[PosInt, QueuePolicy] = Field(default_factory=dict,
                                                             description="Queue policy per priority level: {level: policy}.")

    @model_validator(mode="after")
    def _priorities(self):
        levels, default = self.priority_levels, self.default_priority_level
        if levels and not 1 <= default <= levels:
            raise fail(f"{default} is not in 1..{levels} (priority_levels); set it", at="default_priority_level")
        if default and not levels:
            raise fail("needs priority_levels; set priority_levels", at="default_priority_level")
        for lvl in self.priority_queue_policy:
            if lvl > levels:
                raise fail(f"level {lvl} > priority_levels {levels}", at=f"priority_queue_policy.{lvl}")
        object.__setattr__(self, "default_queue_policy", _policy_dict(self.default_queue_policy))
        object.__setattr__(self, "priority_queue_policy",
                           {k: _policy_dict(v) for k, v in self.priority_queue_policy.items()})
        return self


@spec_type
class InstanceGroup(Mapping):
    count: PosInt = Field(default=1, description="Instances.")
    kind: Literal["KIND_AUTO", "KIND_CPU", "KIND_GPU"] = Field(default="KIND_CPU", description="Where they run.")
    gpus: tuple[NonNegInt, ...] = Field(default=(), description="GPU ids.")
    profile: tuple[Annotated[str, BeforeValidator(str)], ...] = Field(default=(), description="TensorRT optimisation profiles.")


@spec_type
class RateLimiterResource(Mapping):
    name: Str = Field(description="Resource name.")
    count: PosInt = Field(description="Units needed.")
    global_: Bool = Field(default=False, alias="global", description="Shared by every device.")


@spec_type
class RateLimiter(Mapping):
    resources: tuple[RateLimiterResource, ...] = Field(default=(), description="Resources an instance needs to run.")
    priority: NonNegInt = Field(default=0, description="Instance priority (0 = default).")

    def as_dict(self) -> dict:
        return {"resources": [{"name": r.name, "count": r.count, "global": r.global_} for r in self.resources],
                "priority": self.priority}


def _version_policy(v: Any) -> Any:
    if v is None:
        return None
    if not isinstance(v, dict) or len(v) != 1 or next(iter(v)) not in ("latest", "all", "specific"):
        raise fail("expected one of {latest: N}, {all: true}, {specific: [versions]}")
    (k, val), = v.items()
    if k == "latest":
        n = val.get("num_versions") if isinstance(val, dict) else val  # (already read: {num_versions: N})
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise fail(f"expected a positive integer, got {kind(n)}", at="latest")
        return {"latest": {"num_versions": n}}
    if k == "all":
        return {"all": {}}
    versions = val.get("versions") if isinstance(val, dict) else val
    if not isinstance(versions, list) or not versions:
        raise fail("expected a non-empty list of version numbers", at="specific")
    for j, x in enumerate(versions):
        if isinstance(x, bool) or not isinstance(x, int) or x < 1:
            raise fail(f"expected a positive integer, got {kind(x)}", at=f"specific[{j}]")
    return {"specific": {"versions": list(versions)}}


_VERSION_POLICY_SCHEMA = {"description": "{latest: N} | {all: true} | {specific: [versions]}.", "oneOf": [
    {"type": "object", "properties": {"latest": {"type": "integer", "minimum": 1}}, "required": ["latest"],
     "additionalProperties": False},
    {"type": "object", "properties": {"all": {"type": "boolean"}}, "required": ["all"], "additionalProperties": False},
    {"type": "object", "properties": {"specific": {"type": "array", "items": {"type": "integer", "minimum": 1},
                                                   "minItems": 1}},
     "required": ["specific"], "additionalProperties": False}]}


def _parameters(v: Any) -> Any:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise fail(f"expected a mapping, got {kind(v)}")
    out = {}
    for k, x in v.items():
        if isinstance(x, (dict, list)) or x is None:
            raise fail("parameter values are strings, numbers or booleans", at=str(k))
        out[str(k)] = str(x).lower() if isinstance(x, bool) else str(x)
    return out


# ------------------------------------------------------------------------- native backend settings
# The values a spec may give each native backend, written as that backend reads them (a string), and checked
# as it parses them. (Minimal data kept in the spec layer; the backend table, generator/tables/backends.py, holds the
# full parameter list of each backend.)

Check = Callable[[str], Optional[str]]


def _int_check(v: str) -> str | None:
    try:
        n = int(v)
    except ValueError:
        return f"'{v}' is not an integer"
    return None if n >= 0 else f"{n} is out of range [0, ...]"


def _choice(*values: str) -> Check:
    return lambda v: None if v in values else f"'{v}' is not one of {', '.join(values)}"


def _bool_check(v: str) -> str | None:
    ok = v.lower() in ("true", "false", "1", "0", "yes", "no", "on", "off")
    return None if ok else f"'{v}' is not a boolean (true/false)"


def _streams(v: str) -> str | None:
    return None if v in ("AUTO", "NUMA") or (v.isdigit() and int(v) > 0) else f"'{v}' is not AUTO, NUMA or a positive integer"


_BOOL_WORDS = {"onnxruntime": ("1", "0"), "openvino": ("YES", "NO"), "pytorch": ("true", "false")}
_ORT_MODES = {"sequential": "0", "parallel": "1", "0": "0", "1": "1"}


def _setting(backend: str, check: Check, schema: dict, normalize: Callable[[str], str] = lambda v: v):
    def read(v: Any) -> Any:
        if isinstance(v, (dict, list)) or v is None:
            raise fail("expected a string, number or boolean")
        if isinstance(v, bool):
            v = _BOOL_WORDS[backend][0 if v else 1]
        v = normalize(str(v))
        why = check(v)
        if why:
            raise fail(why)
        return v

    return Annotated[Optional[str], BeforeValidator(read), WithJsonSchema(schema)]


_S_INT = {"type": ["integer", "string"], "minimum": 0}
_S_BOOL = {"type": ["boolean", "string"]}


def _exec_mode(v: str) -> str:
    return _ORT_MODES.get(v.lower(), v)


def _graph_level(v: str) -> str:
    return v.lower()


@spec_type
class OnnxruntimeSettings(Mapping):
    intra_op_thread_count: _setting("onnxruntime", _int_check, _S_INT) = None
    inter_op_thread_count: _setting("onnxruntime", _int_check, _S_INT) = None
    execution_mode: _setting("onnxruntime", _choice("0", "1"), {"enum": ["sequential", "parallel", 0, 1]},
                             _exec_mode) = None
    enable_mem_arena: _setting("onnxruntime", _bool_check, _S_BOOL) = None
    enable_mem_pattern: _setting("onnxruntime", _bool_check, _S_BOOL) = None
    graph_level: _setting("onnxruntime", _choice("disable", "basic", "extended", "all"),
                          {"enum": ["disable", "basic", "extended", "all"]}, _graph_level) = None


_YES_NO = _choice("YES", "NO")


@spec_type
class OpenvinoSettings(Mapping):
    NUM_STREAMS: _setting("openvino", _streams, {"type": ["integer", "string"]}, str.upper) = None
    PERFORMANCE_HINT: _setting("openvino", _choice("LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"),
                               {"enum": ["LATENCY", "THROUGHPUT", "CUMULATIVE_THROUGHPUT"]}, str.upper) = None
    INFERENCE_NUM_THREADS: _setting("openvino", _int_check, _S_INT) = None
    ENABLE_BATCH_PADDING: _setting("openvino", _YES_NO, _S_BOOL, str.upper) = None
    RESHAPE_IO_LAYERS: _setting("openvino", _YES_NO, _S_BOOL, str.upper) = None
    COMPILATION_NUM_THREADS: _setting("openvino", _int_check, _S_INT) = None


@spec_type
class PytorchSettings(Mapping):
    INFERENCE_MODE: _setting("pytorch", _bool_check, _S_BOOL) = None
    DISABLE_OPTIMIZED_EXECUTION: _setting("pytorch", _bool_check, _S_BOOL) = None
    INTRA_OP_THREAD_COUNT: _setting("pytorch", _int_check, _S_INT) = None
    INTER_OP_THREAD_COUNT: _setting("pytorch", _int_check, _S_INT) = None
    ENABLE_JIT_EXECUTOR: _setting("pytorch", _bool_check, _S_BOOL) = None
    ENABLE_JIT_PROFILING: _setting("pytorch", _bool_check, _S_BOOL) = None


@spec_type
class BackendSettings(Mapping):
    onnxruntime: Optional[OnnxruntimeSettings] = Field(default=None, description="The onnxruntime backend's parameters.")
    openvino: Optional[OpenvinoSettings] = Field(default=None, description="The openvino backend's parameters.")
    pytorch: Optional[PytorchSettings] = Field(default=None, description="The pytorch backend's parameters.")

    def as_dict(self) -> dict:
        out = {}
        for name in ("onnxruntime", "openvino", "pytorch"):
            s = getattr(self, name)
            vals = {k: v for k, v in vars(s).items() if v is not None and not k.startswith("_")} if s else {}
            if vals:
                out[name] = vals
        return out


BACKEND_SETTINGS = {"onnxruntime": OnnxruntimeSettings, "openvino": OpenvinoSettings, "pytorch": PytorchSettings}


def _dynamic_batching(v: Any) -> Any:
    if v is False:
        return None
    return {} if v is None else v


@spec_type
class TritonSpec(Mapping):
    # false disables the batcher; with max_batch_size 0 there is none (ModelSpec)
    dynamic_batching: Annotated[Optional[DynamicBatching], BeforeValidator(_dynamic_batching)] = Field(
        default=DynamicBatching(), description="Dynamic batcher; false disables it.")
    instance_group: tuple[InstanceGroup, ...] = Field(default=(), description="Instance groups.")
    warmup: Bool = Field(default=True, description="Render model_warmup entries.")
    # {"latest": {"num_versions": n}} | {"all": {}} | {"specific": {"versions": [...]}} once read
    version_policy: Annotated[Optional[dict], BeforeValidator(_version_policy), WithJsonSchema(_VERSION_POLICY_SCHEMA)] = None
    parameters: Annotated[dict, BeforeValidator(_parameters), WithJsonSchema(
        {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]},
         "description": "Extra config parameters (strings, numbers, booleans)."})] = Field(default_factory=dict)
    intra_op_threads: NonNegInt = Field(default=0, description="Intra-op threads per instance; 0 = runtime default.")
    # {"onnxruntime": {...}, "openvino": {...}, "pytorch": {...}} once read: the backend's own names and string
    # values; onnxruntime's "graph_level" is optimization.graph.level
    backend: Optional[BackendSettings] = Field(default_factory=dict,
                                               description="Native backend settings, under each backend's own names.")
    response_cache: Bool = Field(default=False, description="Triton's response cache (the server needs --cache-config).")
    rate_limiter: Optional[RateLimiter] = Field(default=None, description="Rate limiter resources and priority of "
                                                                          "every instance group.")

    @field_validator("backend", mode="before")
    @classmethod
    def _no_backend(cls, v):
        return {} if v is None else v

    @model_validator(mode="after")
    def _as_dicts(self):
        if isinstance(self.backend, BackendSettings):
            object.__setattr__(self, "backend", self.backend.as_dict())
        elif not isinstance(self.backend, dict):
            object.__setattr__(self, "backend", {})
        if isinstance(self.rate_limiter, RateLimiter):
            object.__setattr__(self, "rate_limiter", self.rate_limiter.as_dict())
        return self
