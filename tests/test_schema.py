"""`tritongen schema`: generated from the spec models (generator/spec/), a valid JSON Schema that accepts the
example spec, rejects unknown keys, lists exactly the keys the reader allows in every mapping with each field's
type, enum and limits, and is what the README's key reference prints."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import jsonschema
import pytest
import yaml
from click.testing import CliRunner

from generator.errors import UserError
from generator.spec import parse_spec
from generator.spec import schema as spec_schema
from generator.spec.schema import schema

ROOT = Path(__file__).resolve().parent.parent

# A spec every mapping of which can be reached: factory checkpoints are not opened while parsing.
BASE = {
    "models": [{
        "name": "m",
        "source": {"factory": "cnn:small_cnn", "checkpoint": "c.pt"},
        "inputs": [{"name": "x", "dtype": "float32", "shape": [3, 8, 8]}],
        "outputs": [{"name": "y", "dtype": "float32", "shape": [10]}],
        "max_batch_size": 4,
        "variants": [{"name": "onnx", "verify": {"atol": 1e-3}}],
        "calibration": {"samples": 2},
        "verify": {"atol": 1e-3},
        "triton": {"dynamic_batching": {"max_queue_delay_microseconds": 10},
                   "instance_group": [{"count": 1}]},
        "preprocess": {"image": {"size": [8, 8]}},
    }],
}

# mapping (its schema definition) -> how to put an unknown key "zz" into it
INJECT = {
    "spec": lambda s: s,
    "ModelSpec": lambda s: s["models"][0],
    "Source": lambda s: s["models"][0]["source"],
    "InputSpec": lambda s: s["models"][0]["inputs"][0],
    "OutputSpec": lambda s: s["models"][0]["outputs"][0],
    "VariantSpec": lambda s: s["models"][0]["variants"][0],
    "Tolerance": lambda s: s["models"][0]["verify"],
    "Calibration": lambda s: s["models"][0]["calibration"],
    "TritonSpec": lambda s: s["models"][0]["triton"],
    "DynamicBatching": lambda s: s["models"][0]["triton"]["dynamic_batching"],
    "InstanceGroup": lambda s: s["models"][0]["triton"]["instance_group"][0],
    "PreprocessSection": lambda s: s["models"][0]["preprocess"],
    "ImageSection": lambda s: s["models"][0]["preprocess"]["image"],
}


def _pickle(s):
    s["models"][0]["source"] = {"pickle": {"path": "m.pt", "trust": True}}
    return s["models"][0]["source"]["pickle"]


def _text(s):
    s["models"][0]["preprocess"] = {"text": {"max_length": 8}}
    return s["models"][0]["preprocess"]["text"]


def _backend(s):
    s["models"][0]["triton"]["backend"] = {"onnxruntime": {"intra_op_thread_count": 1}}
    return s["models"][0]["triton"]["backend"]


def _rate_limiter(s):
    s["models"][0]["triton"]["rate_limiter"] = {"resources": [{"name": "r", "count": 1}]}
    return s["models"][0]["triton"]["rate_limiter"]


def _rate_limiter_resource(s):
    return _rate_limiter(s)["resources"][0]


def _queue_policy(s):
    s["models"][0]["triton"]["dynamic_batching"]["default_queue_policy"] = {"max_queue_size": 4}
    return s["models"][0]["triton"]["dynamic_batching"]["default_queue_policy"]


def _tune(s):
    s["models"][0]["tune"] = {"instances": [1]}
    return s["models"][0]["tune"]


def _ort(s):
    return _backend(s)["onnxruntime"]


def _ov(s):
    s["models"][0]["triton"]["backend"] = {"openvino": {"NUM_STREAMS": 1}}
    return s["models"][0]["triton"]["backend"]["openvino"]


def _pt(s):
    s["models"][0]["triton"]["backend"] = {"pytorch": {"INFERENCE_MODE": True}}
    return s["models"][0]["triton"]["backend"]["pytorch"]


def _trt_accelerator(s):
    s["models"][0]["variants"][0]["options"] = {"trt_accelerator": {"precision": "fp16"}}
    return s["models"][0]["variants"][0]["options"]["trt_accelerator"]


SETUP = {"TuneSettings": _tune, "PickleSource": _pickle, "TextSection": _text, "BackendSettings": _backend,
         "RateLimiter": _rate_limiter, "RateLimiterResource": _rate_limiter_resource, "QueuePolicy": _queue_policy,
         "OnnxruntimeSettings": _ort, "OpenvinoSettings": _ov, "PytorchSettings": _pt, "TrtAccelerator": _trt_accelerator}
OPTION_DEFS = {cls.__name__: key for key, cls in __import__("generator.spec.options", fromlist=["OPTIONS"]).OPTIONS.items()}


def _options(name):
    def put(s):
        s["models"][0]["variants"] = [{"name": OPTION_DEFS[name], "options": {}}]
        return s["models"][0]["variants"][0]["options"]
    return put


SETUP.update({name: _options(name) for name in OPTION_DEFS})


def _allowed_by_parser(mapping: str) -> set[str]:
    spec = copy.deepcopy(BASE)
    target = SETUP[mapping](spec) if mapping in SETUP else INJECT[mapping](spec)
    target["zz"] = 1
    with pytest.raises(UserError) as e:
        parse_spec(spec, ROOT / "examples" / "spec.yaml")
    m = re.search(r"\.?zz: unknown (?:key|option for [\w-]+); allowed(?: keys here)?: (.*)$", str(e.value))
    assert m, f"{mapping}: the parser did not reject the unknown key as expected: {e.value}"
    return {k.strip() for k in m.group(1).split(",")}


def _mappings() -> dict[str, dict]:
    s = schema()
    return {"spec": s["properties"], **{k: d["properties"] for k, d in s["$defs"].items()
                                        if "properties" in d and k != "defaults"}}


@pytest.mark.parametrize("mapping", sorted(_mappings()))
def test_schema_lists_exactly_the_keys_the_reader_allows(mapping):
    table = set(_mappings()[mapping])
    parser = _allowed_by_parser(mapping)
    if mapping == "PreprocessSection":  # the reader reads image and text branches apart; both are keys
        parser |= {"text"}
    assert parser == table


def test_every_mapping_of_the_schema_is_checked_against_the_reader():
    assert set(_mappings()) == set(INJECT) | set(SETUP)


def _constraints(field_info) -> dict:
    """What pydantic enforces on a field (limits, lengths, pattern), as JSON Schema keywords."""
    out = {}
    names = {"ge": "minimum", "le": "maximum", "min_length": None, "max_length": None, "pattern": "pattern"}
    for m in field_info.metadata:
        for attr, key in names.items():
            v = getattr(m, attr, None)
            if v is not None and key:
                out[key] = v
    return out


def _walk(node):
    yield node
    if isinstance(node, dict):
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def test_every_field_of_every_model_is_in_the_schema_with_its_type_enum_and_limits():
    import dataclasses
    import typing

    from generator.spec.base import INTERNAL

    defs = schema()["$defs"]
    classes = spec_schema.spec_classes()
    checked = 0
    for name, cls in classes.items():
        assert name in defs, f"{name}: a spec model missing from the schema"
        props = defs[name]["properties"]
        for f in dataclasses.fields(cls):
            if f.metadata.get(INTERNAL):
                assert f.name not in props
                continue
            info = cls.__pydantic_fields__[f.name]
            key = info.alias or f.name
            assert key in props, f"{name}.{key}: not in the schema"
            prop = props[key]
            nodes = list(_walk(prop))
            for kw, v in _constraints(info).items():
                assert any(isinstance(n, dict) and n.get(kw) == v for n in nodes), f"{name}.{key}: {kw} {v} not in {prop}"
            for lit in (a for a in _literals(info.annotation)):
                assert any(isinstance(n, dict) and set(lit) <= set(n.get("enum", [n.get("const")])) for n in nodes), \
                    f"{name}.{key}: enum {lit} not in {prop}"
            assert any(isinstance(n, dict) and ("type" in n or "$ref" in n or "enum" in n) for n in nodes), \
                f"{name}.{key}: no type in {prop}"
            checked += 1
    assert checked > 100


def _literals(tp):
    import typing

    if typing.get_origin(tp) is typing.Literal:
        yield typing.get_args(tp)
    for a in typing.get_args(tp):
        if not isinstance(a, (str, int, float, bool)):
            yield from _literals(a)


def test_a_key_added_to_a_model_appears_in_the_schema_with_no_other_edit():
    """A new field on a spec model (here a subclass made on the fly) is in the generated schema with its limits."""
    from typing import Annotated, Literal

    from pydantic import Field

    from generator.spec.base import spec_type
    from generator.spec.triton import InstanceGroup

    NewGroup = spec_type(type("NewGroup", (InstanceGroup,), {
        "__module__": __name__,
        "__annotations__": {"weight": Annotated[int, Field(strict=True, ge=2, le=9)],
                            "colour": Literal["red", "blue"]},
        "weight": Field(default=2, description="made up"), "colour": "red"}))
    d = spec_schema.schema_of(NewGroup)["NewGroup"]
    assert d["properties"]["weight"] == {"default": 2, "description": "made up", "maximum": 9, "minimum": 2,
                                         "title": "Weight", "type": "integer"}
    assert d["properties"]["colour"]["enum"] == ["red", "blue"]
    assert set(d["properties"]) == {"count", "kind", "gpus", "profile", "weight", "colour"}
    assert d["additionalProperties"] is False


def test_readme_key_reference_is_the_generated_one():
    text = (ROOT / "README.md").read_text()
    begin, end = "<!-- spec-keys: begin (tritongen schema --markdown) -->\n", "<!-- spec-keys: end -->"
    assert begin in text and end in text, "README: the spec key reference markers are missing"
    section = text.split(begin, 1)[1].split(end, 1)[0]
    assert section.strip() == spec_schema.markdown().strip(), \
        "README's spec key reference is stale: paste `tritongen schema --markdown` between the markers"


def test_schema_is_valid_and_accepts_the_example_spec():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    jsonschema.validate(yaml.safe_load((ROOT / "examples" / "spec.yaml").read_text()), s,
                        cls=jsonschema.Draft202012Validator)
    jsonschema.validate(BASE, s, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("mapping", ["spec", "ModelSpec", "Source", "InputSpec", "TritonSpec", "ImageSection"])
def test_schema_rejects_unknown_keys(mapping):
    spec = copy.deepcopy(BASE)
    INJECT[mapping](spec)["zz"] = 1
    with pytest.raises(jsonschema.ValidationError, match="zz"):
        jsonschema.validate(spec, schema(), cls=jsonschema.Draft202012Validator)


def test_cli_prints_the_schema():
    result = CliRunner().invoke(__import__("generator.cli", fromlist=["cli"]).cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["$defs"]["Source"]["properties"]["huggingface"]["anyOf"][0]["type"] == "string"
    md = CliRunner().invoke(__import__("generator.cli", fromlist=["cli"]).cli, ["schema", "--markdown"])
    assert md.exit_code == 0 and "| `max_batch_size` | integer >= 0 <= 2147483647 |" in md.output
