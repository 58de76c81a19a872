"""pydantic's ValidationError -> one line naming the field path: ``models[0].inputs[1].dtype: 'float33' is not
one of float32, float16, ...``. The path comes from the error's location; the wording from its type."""

from __future__ import annotations

import re
from pydantic import ValidationError

from ..errors import UserError
from .base import kind


def path(loc: tuple, prefix: str = "") -> str:
    out = prefix
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in ("[key]",):
            continue
        else:
            out += f".{part}" if out else str(part)
    return out


def _choices(expected: str) -> str:
    found = re.findall(r"'([^']*)'", expected)
    return ", ".join(found) if found else expected


def message(err: dict) -> str:
    """The wording of one pydantic error (without its path)."""
    t, v, ctx = err["type"], err.get("input"), err.get("ctx") or {}
    if t == "spec":
        return ctx["msg"]
    if t == "missing":
        return "missing; add it"
    if t in ("int_type", "int_parsing", "int_from_float"):
        return f"expected an integer, got {kind(v)}"
    if t in ("greater_than_equal", "greater_than"):
        return f"must be >= {ctx.get('ge', ctx.get('gt'))}, got {v}"
    if t in ("less_than_equal", "less_than"):
        return f"must be <= {ctx.get('le', ctx.get('lt'))}, got {v}"
    if t in ("string_type", "string_too_short"):
        return f"expected a non-empty string, got {kind(v)}"
    if t in ("bool_type", "bool_parsing"):
        return f"expected true or false, got {v!r}"
    if t in ("float_type", "float_parsing"):
        return f"expected a number, got {kind(v)}"
    if t in ("list_type", "tuple_type", "iterable_type"):
        return f"expected a list, got {kind(v)}"
    if t in ("dict_type", "dataclass_type", "model_type", "dataclass_exact_type"):
        return f"expected a mapping, got {kind(v)}"
    if t == "literal_error":
        return f"'{v}' is not one of {_choices(ctx.get('expected', ''))}"
    if t in ("too_short", "too_long"):
        lo, hi, n = ctx.get("min_length"), ctx.get("max_length"), ctx.get("actual_length")
        if lo is not None and lo == hi:
            return f"expected {lo} items, got {n}; give exactly {lo}"
        if t == "too_short" and lo is not None:
            return f"expected at least {lo} items, got {n}; add {lo - (n or 0)}"
        if t == "too_long" and hi is not None:
            return f"expected at most {hi} items, got {n}; remove {(n or 0) - hi}"
        return f"expected {err['msg'].split('should have ')[-1]}"
    if t == "value_error":
        return str(ctx.get("error", err["msg"]))
    return err["msg"]


def first_error(e: ValidationError, prefix: str = "") -> tuple[str, str]:
    """(field path, wording) of the first error pydantic reports."""
    err = e.errors(include_url=False)[0]
    where = path(err["loc"], prefix)
    at = (err.get("ctx") or {}).get("at") if err["type"] == "spec" else None
    if at:
        where = f"{where}{'' if at.startswith('[') else '.'}{at}" if where else at
    return where, message(err)


def user_error(e: ValidationError, prefix: str = "") -> UserError:
    where, msg = first_error(e, prefix)
    return UserError(f"{where}: {msg}" if where else msg)
