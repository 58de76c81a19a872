"""`tritongen schema`: a valid JSON Schema that accepts the example spec, rejects unknown keys, and lists
exactly the keys the spec parser allows in every mapping (one definition, checked from both sides)."""

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
from generator.spec_schema import mappings, schema

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

# mapping in the schema table -> how to put an unknown key "zz" into it
INJECT = {
    "spec": lambda s: s,
    "model": lambda s: s["models"][0],
    "source": lambda s: s["models"][0]["source"],
    "input": lambda s: s["models"][0]["inputs"][0],
    "output": lambda s: s["models"][0]["outputs"][0],
    "variant": lambda s: s["models"][0]["variants"][0],
    "tolerance": lambda s: s["models"][0]["verify"],
    "calibration": lambda s: s["models"][0]["calibration"],
    "triton": lambda s: s["models"][0]["triton"],
    "dynamic_batching": lambda s: s["models"][0]["triton"]["dynamic_batching"],
    "instance_group": lambda s: s["models"][0]["triton"]["instance_group"][0],
    "preprocess": lambda s: s["models"][0]["preprocess"],
    "image": lambda s: s["models"][0]["preprocess"]["image"],
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


SETUP = {"tune": _tune, "pickle": _pickle, "text": _text, "backend": _backend, "rate_limiter": _rate_limiter,
         "rate_limiter_resource": _rate_limiter_resource, "queue_policy": _queue_policy}


def _allowed_by_parser(mapping: str) -> set[str]:
    spec = copy.deepcopy(BASE)
    target = SETUP[mapping](spec) if mapping in SETUP else INJECT[mapping](spec)
    target["zz"] = 1
    with pytest.raises(UserError) as e:
        parse_spec(spec, ROOT / "examples" / "spec.yaml")
    m = re.search(r"\.?zz: unknown key; allowed keys here: (.*)$", str(e.value))
    assert m, f"{mapping}: the parser did not reject the unknown key as expected: {e.value}"
    return {k.strip() for k in m.group(1).split(",")}


@pytest.mark.parametrize("mapping", sorted(set(mappings()) - {"defaults"}))
def test_schema_lists_exactly_the_keys_the_parser_allows(mapping):
    table = set(mappings()[mapping])
    parser = _allowed_by_parser(mapping)
    if mapping == "preprocess":  # the parser reads image and text branches apart; the schema holds both
        parser |= {"text"}
    assert parser == table


def test_every_mapping_of_the_table_is_checked_against_the_parser():
    assert set(mappings()) == set(INJECT) | set(SETUP)


def test_schema_is_valid_and_accepts_the_example_spec():
    s = schema()
    jsonschema.Draft202012Validator.check_schema(s)
    jsonschema.validate(yaml.safe_load((ROOT / "examples" / "spec.yaml").read_text()), s,
                        cls=jsonschema.Draft202012Validator)
    jsonschema.validate(BASE, s, cls=jsonschema.Draft202012Validator)


@pytest.mark.parametrize("mapping", ["spec", "model", "source", "input", "triton", "image"])
def test_schema_rejects_unknown_keys(mapping):
    spec = copy.deepcopy(BASE)
    INJECT[mapping](spec)["zz"] = 1
    with pytest.raises(jsonschema.ValidationError, match="zz"):
        jsonschema.validate(spec, schema(), cls=jsonschema.Draft202012Validator)


def test_cli_prints_the_schema():
    result = CliRunner().invoke(__import__("generator.cli", fromlist=["cli"]).cli, ["schema"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["$defs"]["source"]["properties"]["huggingface"]["type"] == "string"
