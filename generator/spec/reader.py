"""Reading a spec file: YAML -> defaults merged into each model -> the typed models (generator/spec/models.py).

Pure: reads the YAML and, for huggingface sources, the folder's JSON files; imports no torch, no variant
build code, loads no tokenizer. Every error is one line naming the field path and the fix. ``defaults:``
may hold any model key; a model's own value wins (mappings merge one level deep, so
``triton: {warmup: false}`` in a model keeps the default's ``dynamic_batching``).
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter, ValidationError

from ..errors import UserError
from .base import keys_of, kind
from .errors import user_error
from .hf_folder import fill_model
from .models import ModelSpec, Spec, SpecFile

_MODEL = TypeAdapter(ModelSpec)
MODEL_KEYS = tuple(keys_of(ModelSpec))


def load_spec(path: str | Path, known_variants: tuple[str, ...] | None = None) -> Spec:
    """Read and validate a YAML spec. Raises UserError naming the field."""
    import yaml

    path = Path(path)
    if path.is_dir():
        raise UserError(f"{path}: is a folder; pass the path to your spec YAML (e.g. {path / 'spec.yaml'})")
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
        data = yaml.load(text, Loader=_unique_keys_loader())
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        at = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise UserError(f"{path}{at}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax")
    except RecursionError:
        raise UserError(f"{path}: nested too deeply to read (thousands of levels); a spec is a few levels deep") from None
    return parse_spec(data, path.resolve(), known_variants)


def _unique_keys_loader():
    """yaml.SafeLoader refusing a key given twice in one mapping (PyYAML keeps the last one silently)."""
    import yaml

    class UniqueKeys(yaml.SafeLoader):
        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if isinstance(key, (str, int, float, bool)) and key in seen:
                    raise yaml.constructor.ConstructorError(
                        None, None, f"key {key!r} given twice in one mapping (the second would silently win); keep one",
                        key_node.start_mark)
                seen.add(key)
            return super().construct_mapping(node, deep=deep)

    return UniqueKeys


def parse_spec(data: Any, path: Path, known_variants: tuple[str, ...] | None = None) -> Spec:
    """``known_variants``: accepted for compatibility; the variant keys are the spec layer's own (options.py)."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise UserError(f"spec: expected a mapping (models: [...]), got {kind(data)}; start the file with 'models:' "
                        "(see examples/spec.yaml)")
    allowed = keys_of(SpecFile)
    unknown = [k for k in data if k not in allowed]
    if unknown:
        raise UserError(f"spec.{unknown[0]}: unknown key; allowed keys here: {', '.join(allowed)}")
    defaults = data.get("defaults") or {}
    if not isinstance(defaults, dict):
        raise UserError(f"defaults: expected a mapping, got {kind(defaults)}")
    bad = [k for k in defaults if k not in MODEL_KEYS or k == "name"]
    if bad:
        raise UserError(f"defaults.{bad[0]}: not a model key that can have a default; "
                        f"allowed: {', '.join(k for k in MODEL_KEYS if k != 'name')}")
    if "models" not in data:
        raise UserError("spec.models: missing; add it")
    raw_models = data["models"]
    if not isinstance(raw_models, list):
        raise UserError(f"spec.models: expected a list, got {kind(raw_models)}")
    if not raw_models:
        raise UserError("models: empty; add at least one model")
    models: list[ModelSpec] = []
    seen: dict[str, int] = {}
    for i, raw in enumerate(raw_models):
        where = f"models[{i}]"
        if not isinstance(raw, dict):
            raise UserError(f"{where}: expected a mapping, got {kind(raw)}")
        m = read_model(merge(defaults, raw), i, path.parent)
        if m.name in seen:
            raise UserError(f"{where}.name: '{m.name}' is already used by models[{seen[m.name]}]; names must be unique")
        seen[m.name] = i
        models.append(m)
    return Spec(path=path, models=tuple(models), triton_version=_triton_version(data.get("triton_version")))


def _triton_version(value: Any) -> str | None:
    """The target release (generator/tables/releases.py): a known release name, e.g. "24.10"."""
    if value is None:
        return None
    from generator.tables import releases

    try:
        return releases.release(str(value)).name
    except LookupError as e:
        raise UserError(f"triton_version: {e}; quote it in YAML (\"24.10\", not 24.1)") from None


def merge(defaults: dict, model: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in model.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = {**out[k], **v}
        else:
            out[k] = copy.deepcopy(v)
    return out


def read_model(raw: dict, index: int, root: Path) -> ModelSpec:
    """One merged model mapping -> ModelSpec (``raw`` kept for the hashes)."""
    where = f"models[{index}]"
    if isinstance(raw.get("source"), dict) and "huggingface" in raw["source"]:
        raw = fill_model(raw, where, root)  # inputs/outputs/dims the spec omits, from config.json
    if "max_batch_size" not in raw and "name" in raw:
        import difflib

        typo = difflib.get_close_matches("max_batch_size", [str(k) for k in raw], n=1, cutoff=0.75)
        hint = f" ('{typo[0]}' is not a key: a typo?)" if typo else ""
        raise UserError(f"{where}.max_batch_size: missing{hint}; set it (0 disables batching)")
    try:
        m = _MODEL.validate_python(raw, context={"root": root, "where": where})
    except ValidationError as e:
        raise user_error(e, where) from None
    object.__setattr__(m, "raw", raw)
    object.__setattr__(m, "index", index)
    return m
