"""``tritongen schema``: the spec's JSON Schema (draft 2020-12), generated from the typed models, and the
README's key reference (``tritongen schema --markdown``) from the same document.

Editors that speak the YAML language server complete and check a spec with this first line:
``# yaml-language-server: $schema=tritongen-spec.schema.json``.
"""

from __future__ import annotations

import copy
import dataclasses

from pydantic import TypeAdapter

from . import models, options, preprocess, tensors, triton, tune
from .base import INTERNAL, keys_of

SCHEMA_ID = "https://tritongen.invalid/spec.schema.json"
_REF = "#/$defs/{model}"


def spec_classes() -> dict[str, type]:
    """Every spec mapping's class by its schema name (def name = class name)."""
    out = {}
    for mod in (models, tensors, triton, preprocess, tune):
        for v in vars(mod).values():
            if isinstance(v, type) and dataclasses.is_dataclass(v) and hasattr(v, "_only_known_keys") \
                    and v is not models.SpecFile:  # the top level: schema()'s own properties
                out[v.__name__] = v
    for v in (*options.OPTIONS.values(), options.TrtAccelerator):  # (not their shared bases)
        out[v.__name__] = v
    return out


def _strip_internal(defs: dict, classes: dict[str, type]) -> None:
    for name, d in defs.items():
        cls = classes.get(name)
        if cls is None or "properties" not in d:
            continue
        internal = [f.name for f in dataclasses.fields(cls) if f.metadata.get(INTERNAL)]
        for k in internal:
            d["properties"].pop(k, None)
            if k in d.get("required", []):
                d["required"].remove(k)
        for k in [k for k in d["properties"] if k not in keys_of(cls)]:
            d["properties"].pop(k)  # class attributes of the other tensor kind
        d["additionalProperties"] = False
        if not d.get("required"):
            d.pop("required", None)


def _refs(node):
    """``{"x-ref": Name}`` (a reference a field's own schema makes) -> ``{"$ref": "#/$defs/Name"}``."""
    if isinstance(node, dict):
        if "x-ref" in node:
            return {"$ref": _REF.format(model=node["x-ref"]), **{k: _refs(v) for k, v in node.items() if k != "x-ref"}}
        return {k: _refs(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_refs(v) for v in node]
    return node


def schema_of(*roots: type) -> dict:
    """``$defs`` for ``roots`` and everything they reach (internal fields removed)."""
    doc = TypeAdapter(tuple[roots]).json_schema(ref_template=_REF)
    defs = _refs(doc.get("$defs", {}))
    _strip_internal(defs, {**spec_classes(), **{r.__name__: r for r in roots}})
    return defs


def schema() -> dict:
    """The JSON Schema of a spec file."""
    opts = list(options.OPTIONS.values())
    defs = schema_of(models.ModelSpec, models.VariantSpec, preprocess.PreprocessSection, options.TrtAccelerator, *opts)
    model = defs["ModelSpec"]
    model["required"] = ["name", "source"]  # inputs, outputs and max_batch_size are inferred for huggingface sources
    model["properties"]["variants"] = {
        **{k: v for k, v in model["properties"]["variants"].items() if k not in ("items", "type", "default")},
        "type": "array", "minItems": 1,
        "items": {"oneOf": [{"type": "string", "enum": list(options.VARIANT_KEYS)}, {"$ref": "#/$defs/VariantSpec"}]},
    }
    db = defs["TritonSpec"]["properties"]["dynamic_batching"]
    db.pop("default", None)
    db["anyOf"] = [{"$ref": "#/$defs/DynamicBatching"}, {"type": "boolean", "enum": [False]}, {"type": "null"}]
    variant = defs["VariantSpec"]
    variant["allOf"] = [{"if": {"properties": {"name": {"const": key}}},
                         "then": {"properties": {"options": {"$ref": f"#/$defs/{cls.__name__}"}}}}
                        for key, cls in options.OPTIONS.items()]
    default_props = {k: v for k, v in model["properties"].items() if k != "name"}
    defs["defaults"] = {"type": "object", "additionalProperties": False, "properties": copy.deepcopy(default_props)}
    top = {
        "models": {"type": "array", "description": "The models to build, each a mapping.",
                   "items": {"$ref": "#/$defs/ModelSpec"}, "minItems": 1},
        "defaults": {"$ref": "#/$defs/defaults",
                     "description": "Any model key but name; a model's own value wins (mappings merge one level deep)."},
    }
    from pydantic import TypeAdapter

    top_level = TypeAdapter(models.SpecFile).json_schema()["properties"]  # every other top-level key, generated
    top.update({k: v for k, v in top_level.items() if k not in top})
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "tritongen spec",
        "description": "A tritongen spec: PyTorch models in, a verified Triton model repository out.",
        "type": "object",
        "additionalProperties": False,
        "properties": top,
        "required": ["models"],
        "$defs": defs,
    }


# ------------------------------------------------------------------------------------------- key reference


def type_text(prop: dict) -> str:
    """A property's type, enum and limits in a few words (the key reference's second column)."""
    if "$ref" in prop:
        return "mapping (" + prop["$ref"].rsplit("/", 1)[-1] + ")"
    for alt in ("anyOf", "oneOf"):
        if alt in prop:
            parts = [type_text(p) for p in prop[alt] if p.get("type") != "null"]
            return " | ".join(dict.fromkeys(p for p in parts if p))
    if "enum" in prop:
        return "one of " + ", ".join(str(v).lower() if isinstance(v, bool) else str(v) for v in prop["enum"])
    if "const" in prop:
        return str(prop["const"])
    t = prop.get("type", "any")
    t = "/".join(t) if isinstance(t, list) else t
    if t == "array" and "items" in prop:
        t = f"list of {type_text(prop['items'])}"
        if "minItems" in prop and prop.get("minItems") == prop.get("maxItems"):
            t = f"{t} ({prop['minItems']} items)"
        elif "minItems" in prop:
            t = f"{t} (at least {prop['minItems']})"
    limits = []
    if "minimum" in prop:
        limits.append(f">= {prop['minimum']}")
    if "maximum" in prop:
        limits.append(f"<= {prop['maximum']}")
    if "pattern" in prop:
        limits.append(f"matching `{prop['pattern']}`")
    return t + (f" {' '.join(limits)}" if limits else "")


def markdown() -> str:
    """The key reference: one table per mapping (key, type and limits, default, description)."""
    s = schema()
    lines = []
    order = ["ModelSpec", *[k for k in s["$defs"] if k not in ("ModelSpec", "defaults")]]
    for name in order:
        d = s["$defs"][name]
        if "properties" not in d:
            continue
        lines += [f"#### `{name}`", "", "| key | type | default | description |", "|---|---|---|---|"]
        req = set(d.get("required", []))
        for key, prop in d["properties"].items():
            default = "required" if key in req else ("" if prop.get("default") is None else f"`{prop['default']}`")
            desc = prop.get("description", "").replace("|", "\\|")
            lines.append(f"| `{key}` | {type_text(prop).replace('|', chr(92) + '|')} | {default} | {desc} |")
        lines.append("")
    return "\n".join(lines)
