"""What every spec mapping shares: frozen pydantic dataclasses, unknown keys refused with the allowed list,
and the one way a validator reports a problem (``fail``: a message, optionally at a sub-path)."""

from __future__ import annotations

import dataclasses
import math
from typing import Annotated, Any

from pydantic import BeforeValidator, ConfigDict, Field, WithJsonSchema, model_validator
from pydantic.dataclasses import dataclass as _pydantic_dataclass
from pydantic_core import ArgsKwargs, PydanticCustomError

CONFIG = ConfigDict(extra="forbid", arbitrary_types_allowed=True, validate_default=False)
INTERNAL = "tritongen_internal"  # field metadata: filled by the reader, never written in a spec


def spec_type(cls=None, /, **kw):
    """A frozen, validated dataclass whose fields are the keys of one spec mapping."""

    def wrap(c):
        return _pydantic_dataclass(c, frozen=True, config=CONFIG, **kw)

    return wrap(cls) if cls is not None else wrap


def fail(message: str, at: str | None = None) -> PydanticCustomError:
    """An error for ``raise``: ``message`` reported at the validated value's path (+ ``.at``)."""
    return PydanticCustomError("spec", "{msg}", {"msg": message, "at": at or ""})


def kind(v: Any) -> str:
    if v is None:
        return "nothing"
    return {dict: "a mapping", list: "a list", str: f"the string {v!r}"}.get(type(v), repr(v))


def keys_of(cls) -> list[str]:
    """The YAML keys of a spec mapping, in declaration order (aliases as written)."""
    out = []
    for f in dataclasses.fields(cls):
        if f.metadata.get(INTERNAL):
            continue
        info = getattr(cls, "__pydantic_fields__", {}).get(f.name)
        out.append(info.alias if info is not None and info.alias else f.name)
    return out


def internal(default: Any = dataclasses.MISSING, factory: Any = dataclasses.MISSING):
    """A field the reader fills (hash inputs, index), not a spec key: hidden from the schema."""
    kw = {"default": default} if factory is dataclasses.MISSING else {"default_factory": factory}
    return dataclasses.field(metadata={INTERNAL: True}, **kw)


class Mapping:
    """Mixin: a spec mapping refuses what is not a mapping and keys it does not define."""

    unknown_key_message = "unknown key; allowed keys here: {allowed}"

    @model_validator(mode="before")
    @classmethod
    def _only_known_keys(cls, data: Any) -> Any:
        if isinstance(data, ArgsKwargs) or dataclasses.is_dataclass(data):
            return data
        if not isinstance(data, dict):
            raise fail(f"expected a mapping, got {kind(data)}")
        allowed = keys_of(cls)
        for k in data:
            if k not in allowed:
                raise fail(cls.unknown_key_message.format(allowed=", ".join(allowed) or "none",
                                                      variant=getattr(cls, "variant", "")), at=str(k))
        return data


# ---------------------------------------------------------------------------------------- scalar types


def _number(v: Any) -> Any:
    if isinstance(v, str):  # PyYAML reads 1e-4 (no dot) as a string
        try:
            v = float(v)
        except ValueError:
            pass
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v < 0:
        raise fail(f"expected a finite non-negative number, got {v!r}")
    return float(v)


def _fraction(v: Any) -> Any:
    v = _number(v)
    if v > 1:
        raise fail(f"{v} is above 1; give a fraction (e.g. 0.99)")
    return v


def _lower(v: Any) -> Any:
    return v.lower() if isinstance(v, str) else v


def _upper(v: Any) -> Any:
    return v.upper() if isinstance(v, str) else v


Str = Annotated[str, Field(strict=True, min_length=1)]
Int = Annotated[int, Field(strict=True)]
NonNegInt = Annotated[int, Field(strict=True, ge=0)]
PosInt = Annotated[int, Field(strict=True, ge=1)]
Bool = Annotated[bool, Field(strict=True)]
# a number YAML may have read as a string (1e-4): checked by the validator, described for the schema
NonNegFloat = Annotated[float, BeforeValidator(_number), WithJsonSchema({"type": ["number", "string"], "minimum": 0})]
Fraction = Annotated[float, BeforeValidator(_fraction), WithJsonSchema({"type": "number", "minimum": 0, "maximum": 1})]
Lower = BeforeValidator(_lower)  # enums written in any case (calibration method, precision...)
Upper = BeforeValidator(_upper)
