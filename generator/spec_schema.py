"""The spec's JSON Schema, from one table of every mapping's keys (type + description).

``generator/spec.py`` keeps its hand-written reader (field-path errors such as
``models[0].inputs[1].dtype: 'f32' is not one of ...``); this table is the single list of keys both sides
use: ``tests/test_schema.py`` feeds the parser an unknown key in every mapping and checks that the keys
the parser allows are exactly the keys here, so a key added to one and not the other fails the suite.

``tritongen schema`` prints the document; editors that speak the YAML language server complete and check
a spec with this first line:  ``# yaml-language-server: $schema=tritongen-spec.schema.json``.
"""

from __future__ import annotations

from . import dtypes

SCHEMA_ID = "https://tritongen.invalid/spec.schema.json"


def _t(type_: str | list, description: str, **extra) -> dict:
    return {"type": type_, "description": description, **extra}


def _ref(name: str, description: str) -> dict:
    return {"$ref": f"#/$defs/{name}", "description": description}


_POS_INT = {"type": "integer", "minimum": 1}
_FRACTION = {"type": "number", "minimum": 0, "maximum": 1}
_DIM = {"oneOf": [{"type": "integer", "minimum": 1}, {"type": "string", "pattern": r"^[A-Za-z_]\w*$"}]}


def _variant_names() -> list[str]:
    from .variants import REGISTRY

    return list(REGISTRY)


# mapping -> {key: schema fragment}. One entry per YAML mapping the spec has.
def mappings() -> dict[str, dict[str, dict]]:
    from .hf import PADDINGS, POOLINGS, TASKS as HF_TASKS
    from .spec import BACKEND_SETTINGS, INSTANCE_KINDS, TASKS

    return {
        "spec": {
            "models": _t("array", "The models to build, each a mapping.", items={"$ref": "#/$defs/model"},
                         minItems=1),
            "defaults": _ref("defaults", "Any model key but name; a model's own value wins (mappings merge one "
                                         "level deep)."),
        },
        "model": {
            "name": _t("string", "Triton model name (letters, digits, _ and -; no '__').",
                       pattern=r"^[A-Za-z0-9_-]+$"),
            "source": _ref("source", "Where the PyTorch model comes from: exactly one source kind."),
            "inputs": _t("array", "Input tensors, in forward() order (inferred for huggingface sources).",
                         items={"$ref": "#/$defs/input"}),
            "outputs": _t("array", "Output tensors, in the order forward() returns them.",
                          items={"$ref": "#/$defs/output"}),
            "dims": _t("object", "Named dims: {name: [min, opt, max]}; 'batch' is reserved.",
                       additionalProperties={"type": "array", "items": _POS_INT, "minItems": 3, "maxItems": 3}),
            "max_batch_size": _t("integer", "Triton max_batch_size; 0 disables batching.", minimum=0),
            "variants": _t("array", "What to build: variant names or {name, verify, options}.",
                           items={"oneOf": [{"type": "string", "enum": _variant_names()},
                                            {"$ref": "#/$defs/variant"}]}),
            "calibration": _ref("calibration", "INT8 calibration data."),
            "verify": _ref("tolerance", "Accuracy gate for every variant (a variant's own verify wins)."),
            "triton": _ref("triton", "What goes into config.pbtxt beyond tensors."),
            "opset": _t("integer", "ONNX opset (default 20).", minimum=7),
            "preprocess": _ref("preprocess", "CPU preprocessing + an ensemble: image bytes or strings in."),
            "tune": _ref("tune", "tritongen tune's search space and goal for this model."),
        },
        "source": {
            "factory": _t("string", "'module:callable' returning an nn.Module, importable from the spec's folder.",
                          pattern=r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$"),
            "kwargs": _t("object", "Keyword arguments for the factory."),
            "checkpoint": _t("string", "state_dict file for the factory (.pt .pth .bin .ckpt .safetensors)."),
            "state_dict_key": _t("string", "Key of the state_dict inside the checkpoint (e.g. state_dict)."),
            "strip_prefix": _t("string", "Prefix removed from every state_dict key (e.g. 'module.')."),
            "torchscript": _t("string", "A TorchScript file (torch.jit.save)."),
            "exported_program": _t("string", "A torch.export file (.pt2)."),
            "pickle": _ref("pickle", "A whole pickled module: runs code when loaded; needs trust: true."),
            "huggingface": _t("string", "A local Hugging Face folder (config.json + model.safetensors); "
                                        "never a hub id: tritongen never downloads."),
            "task": _t("string", "huggingface: what to serve (default: from the architecture).", enum=list(HF_TASKS)),
            "pooling": _t("string", "huggingface feature-extraction: mean, cls or none (token states).",
                          enum=list(POOLINGS)),
            "normalize": _t("boolean", "huggingface feature-extraction: L2-normalise the embeddings."),
            "trust": _t("boolean", "huggingface: allow pickled weights (pytorch_model.bin) of a folder you trust."),
        },
        "pickle": {
            "path": _t("string", "The pickled module file."),
            "trust": _t("boolean", "Must be true: loading a pickle runs arbitrary code."),
        },
        "input": {
            "name": _t("string", "Tensor name.", pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"),
            "dtype": _t("string", "Element type.", enum=list(dtypes.NAMES)),
            "shape": _t("array", "Shape without the batch dim: integers and named dims.", items=_DIM),
            "range": _t("array", "[low, high) of an integer input (token ids: [0, vocab_size]).",
                        items={"type": "integer"}, minItems=2, maxItems=2),
        },
        "output": {
            "name": _t("string", "Tensor name (for huggingface sources: a key of the model's output).",
                       pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]*$"),
            "dtype": _t("string", "Element type.", enum=list(dtypes.NAMES)),
            "shape": _t("array", "Shape without the batch dim: integers, named dims, or -1 for a dim that "
                                 "follows no input (rendered -1).",
                        items={"oneOf": [*_DIM["oneOf"], {"type": "integer", "enum": [-1]}]}),
            "key": {"type": ["string", "integer"],
                    "description": "What picks this output from forward()'s result: a dict / ModelOutput key, "
                                   "or an index into a tuple (default: the output's name)."},
        },
        "tolerance": {
            "atol": _t(["number", "string"], "Absolute tolerance vs PyTorch."),
            "rtol": _t(["number", "string"], "Relative tolerance vs PyTorch."),
            "min_cosine": {**_FRACTION, "description": "Minimum output cosine vs PyTorch."},
            "task": _t("string", "Task metric gate.", enum=list(TASKS)),
            "min_top1": {**_FRACTION, "description": "classification: top-1 agreement with PyTorch."},
            "min_top5": {**_FRACTION, "description": "classification: top-5 overlap with PyTorch."},
            "min_mean_cosine": {**_FRACTION, "description": "embedding: mean cosine with PyTorch."},
            "samples": {**_POS_INT, "description": "Size of the task-metric set."},
            "data": _t("string", "A separate verification set for the task metrics (.npz, image folder or "
                                 "sentences .txt); default: the calibration data."),
            "accuracy_ratio": {"type": "number", "exclusiveMinimum": 0, "maximum": 1,
                               "description": "With labels: accuracy (top-1, top-5) >= ratio x fp32's (INT8: 0.99)."},
            "min_confident_agreement": {**_FRACTION, "description": "Without labels: top-1 agreement with fp32 on "
                                        "the samples fp32 is confident on (INT8: 0.97)."},
            "confidence": {**_FRACTION, "description": "fp32 top-1 softmax probability of a confident sample (0.5)."},
            "min_confident_samples": {**_POS_INT, "description": "Fewer confident samples: the gate refuses (32)."},
            "labels": _t("string", "A text file: one integer label per sample, in sample order."),
            "reuse_calibration": _t("boolean", "Verify on the calibration samples (default: held out, disjoint)."),
        },
        "tune": {
            "variants": _t("array", "Variants to search (default: every gate-passed one).", items={"type": "string"}),
            "instances": _t("array", "Instance counts (default: 1 .. cores).", items=_POS_INT),
            "max_batch_size": _t("array", "max_batch_size values (<= the verified one).", items=_POS_INT),
            "queue_delay_us": _t("array", "max_queue_delay_microseconds values.", items={"type": "integer", "minimum": 0}),
            "threads": _t("array", "Runtime threads per instance (0 = runtime default).",
                          items={"type": "integer", "minimum": 0}),
            "objective": _t("string", "Maximise throughput or minimise p99.", enum=["throughput", "latency"]),
            "latency_budget_ms": _t("number", "p99 constraint (ms).", minimum=0),
            "min_throughput": _t("number", "Throughput constraint (inferences/s).", minimum=0),
            "max_memory_mb": _t("number", "Server memory constraint for the model (MB).", minimum=0),
        },
        "variant": {
            "name": _t("string", "Variant name.", enum=_variant_names()),
            "verify": _ref("tolerance", "This variant's accuracy gate."),
            "options": _t("object", "Variant options (see README)."),
        },
        "calibration": {
            "samples": {**_POS_INT, "description": "Calibration samples."},
            "data": _t("string", "A folder of images or an .npz file."),
            "method": _t("string", "Range method.", enum=["minmax", "entropy", "percentile"]),
        },
        "triton": {
            "dynamic_batching": {"oneOf": [{"$ref": "#/$defs/dynamic_batching"}, {"type": "boolean", "enum": [False]},
                                           {"type": "null"}], "description": "Dynamic batcher; false disables it."},
            "instance_group": _t("array", "Instance groups.", items={"$ref": "#/$defs/instance_group"}),
            "warmup": _t("boolean", "Render model_warmup entries."),
            "version_policy": _t("object", "{latest: N} | {all: true} | {specific: [versions]}.",
                                 minProperties=1, maxProperties=1),
            "parameters": _t("object", "Extra config parameters (strings, numbers, booleans).",
                             additionalProperties={"type": ["string", "number", "boolean"]}),
            "intra_op_threads": _t("integer", "Intra-op threads per instance; 0 = runtime default.", minimum=0),
            "backend": _ref("backend", "Native backend settings, under each backend's own names."),
            "response_cache": _t("boolean", "Triton's response cache (the server needs --cache-config)."),
            "rate_limiter": _ref("rate_limiter", "Rate limiter resources and priority of every instance group."),
        },
        "backend": {
            name: _t("object", f"The {name} backend's parameters.", additionalProperties=False,
                     properties={k: {"type": ["string", "number", "boolean"]} for k in keys})
            for name, keys in BACKEND_SETTINGS.items()
        },
        "rate_limiter": {
            "resources": _t("array", "Resources an instance needs to run.", items={"$ref": "#/$defs/rate_limiter_resource"}),
            "priority": _t("integer", "Instance priority (0 = default).", minimum=0),
        },
        "rate_limiter_resource": {
            "name": _t("string", "Resource name."),
            "count": {**_POS_INT, "description": "Units needed."},
            "global": _t("boolean", "Shared by every device."),
        },
        "queue_policy": {
            "timeout_action": _t("string", "What happens at the timeout.", enum=["REJECT", "DELAY"]),
            "default_timeout_microseconds": _t("integer", "Queue timeout (0 = none).", minimum=0),
            "allow_timeout_override": _t("boolean", "Requests may set their own timeout."),
            "max_queue_size": _t("integer", "Queue bound (0 = unbounded).", minimum=0),
        },
        "dynamic_batching": {
            "preferred_batch_size": _t("array", "Preferred batch sizes (<= max_batch_size).", items=_POS_INT),
            "max_queue_delay_microseconds": _t("integer", "Queue delay.", minimum=0),
            "preserve_ordering": _t("boolean", "Keep response order."),
            "priority_levels": _t("integer", "Number of request priority levels.", minimum=0),
            "default_priority_level": _t("integer", "Priority of requests that give none.", minimum=0),
            "default_queue_policy": _ref("queue_policy", "Queue policy of every priority level."),
            "priority_queue_policy": _t("object", "Queue policy per priority level: {level: policy}.",
                                        additionalProperties={"$ref": "#/$defs/queue_policy"}),
        },
        "instance_group": {
            "count": {**_POS_INT, "description": "Instances."},
            "kind": _t("string", "Where they run.", enum=list(INSTANCE_KINDS)),
            "gpus": _t("array", "GPU ids.", items={"type": "integer", "minimum": 0}),
            "profile": _t("array", "TensorRT optimisation profiles.", items={"type": "string"}),
        },
        "preprocess": {
            "image": _ref("image", "Image bytes -> the model's image input (decode, resize, normalise)."),
            "text": _ref("text", "Strings -> the model's input_ids / attention_mask / token_type_ids."),
            "variant": _t("string", "The variant the ensemble feeds (default: the first written)."),
            "instances": {**_POS_INT, "description": "Preprocessing instances (KIND_CPU)."},
        },
        "image": {
            "size": _t("array", "[height, width].", items=_POS_INT, minItems=2, maxItems=2),
            "mean": _t("array", "Per-channel mean (RGB).", items={"type": "number"}, minItems=3, maxItems=3),
            "std": _t("array", "Per-channel std (RGB).", items={"type": "number"}, minItems=3, maxItems=3),
            "layout": _t("string", "Tensor layout.", enum=["NCHW", "NHWC"]),
            "input": _t("string", "The model input it feeds (default: the first)."),
        },
        "text": {
            "tokenizer": _t("string", "Folder with tokenizer.json (default: the huggingface source folder)."),
            "max_length": {**_POS_INT, "description": "Truncate to this many tokens (<= the model's positions)."},
            "padding": _t("string", "longest: per request; max_length: always max_length tokens.",
                          enum=list(PADDINGS)),
            "execution_env": _t("string", "EXECUTION_ENV_PATH for the NGC target's tokenizer (numpy<2 + "
                                          "tokenizers), e.g. $$TRITON_MODEL_DIRECTORY/env.tar.gz."),
        },
    }


REQUIRED = {
    "spec": ["models"], "model": ["name", "source"], "input": ["name", "dtype", "shape"],
    "output": ["name", "dtype", "shape"], "variant": ["name"], "pickle": ["path", "trust"], "image": ["size"],
}


def schema() -> dict:
    """The JSON Schema (draft 2020-12) of a spec file."""
    maps = mappings()
    defs = {}
    for name, keys in maps.items():
        if name == "spec":
            continue
        defs[name] = {"type": "object", "additionalProperties": False, "properties": keys,
                      **({"required": REQUIRED[name]} if name in REQUIRED else {})}
    defs["defaults"] = {"type": "object", "additionalProperties": False,
                        "properties": {k: v for k, v in maps["model"].items() if k != "name"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "tritongen spec",
        "description": "A tritongen spec: PyTorch models in, a verified Triton model repository out.",
        "type": "object",
        "additionalProperties": False,
        "properties": maps["spec"],
        "required": REQUIRED["spec"],
        "$defs": defs,
    }
