"""tritongen tokenizer: a Triton python-backend model that turns strings into a text model's token inputs.

Static file; tritongen copies it to ``<model>/<version>/model.py`` and the tokenizer to
``<model>/<version>/tokenizer/tokenizer.json``. Config (``args["model_config"]``):

    input  [ { name: "text" data_type: TYPE_STRING dims: [ 1 ] } ]       # one UTF-8 string per batch row
    output [ { name: "input_ids" data_type: TYPE_INT64 dims: [ -1 ] }, attention_mask, token_type_ids ... ]
    parameters { key: "max_length" value: { string_value: "256" } }        # truncate to this many tokens
    parameters { key: "padding"    value: { string_value: "longest" } }    # longest (per request) | max_length
    parameters { key: "fields"     value: { string_value: "input_ids:ids,attention_mask:attention_mask" } }
    parameters { key: "pad_token"  value: { string_value: "[PAD]" } }      # optional
    parameters { key: "EXECUTION_ENV_PATH" value: { string_value: "/path/to/a numpy<2 env with tokenizers" } }

Strings need a python backend stub whose numpy matches the one it was built with (numpy 1.x for
tritonserver <= 2.51): the embedded server runs this model in tritongen's small numpy<2 environment
(``EXECUTION_ENV_PATH``). Under numpy 2 the 2.51 stub crashes on the first string request, so the model
refuses to load there unless ``stub_numpy2: true`` says the server's stub is built against numpy 2.
Needs only ``numpy`` and ``tokenizers`` (the Rust fast tokenizer).
"""

from __future__ import annotations

import json
import os

import numpy as np
import triton_python_backend_utils as pb_utils

_NUMPY = {"TYPE_INT64": np.int64, "TYPE_INT32": np.int32, "TYPE_INT16": np.int16, "TYPE_INT8": np.int8,
          "TYPE_UINT8": np.uint8, "TYPE_BOOL": np.bool_}


def _param(config, key, default):
    value = config.get("parameters", {}).get(key)
    if isinstance(value, dict):
        value = value.get("string_value", "")
    return value if value else default


def _strings_work():
    """Whether this stub moves TYPE_STRING tensors correctly (not numpy 2 under an old stub)."""
    try:
        probe = np.array([b"ok", "\u00e9".encode()], dtype=np.object_)
        back = pb_utils.Tensor("probe", probe).as_numpy()
        return [bytes(v) for v in back.reshape(-1)] == [b"ok", "\u00e9".encode()]
    except Exception:
        return False


def configure(tokenizer, max_length, padding, pad_token=None):
    """Truncation to ``max_length``; padding to the longest row of a request, or always to ``max_length``,
    with the model's padding token (tritongen passes the one transformers would use)."""
    tokenizer.no_padding()
    tokenizer.no_truncation()
    tokenizer.enable_truncation(max_length=int(max_length))
    candidates = ([pad_token] if pad_token else []) + ["[PAD]", "<pad>", "<|endoftext|>", "</s>", "<unk>"]
    pad = next((c for c in candidates if tokenizer.token_to_id(c) is not None), None)
    tokenizer.enable_padding(pad_id=tokenizer.token_to_id(pad) if pad else 0, pad_token=pad or "[PAD]",
                             length=int(max_length) if padding == "max_length" else None)
    return tokenizer


class TritonPythonModel:
    def initialize(self, args):
        from tokenizers import Tokenizer

        config = json.loads(args["model_config"])
        name = args.get("model_name", config.get("name", "?"))
        numpy2 = int(np.__version__.split(".")[0]) >= 2
        if (numpy2 and _param(config, "stub_numpy2", "false") != "true") or not _strings_work():
            raise pb_utils.TritonModelException(
                f"{name}: the python backend stub of tritonserver <= 2.51 crashes on TYPE_STRING tensors under numpy "
                f"{np.__version__}; set parameters EXECUTION_ENV_PATH to an environment with numpy<2 and tokenizers "
                "(or parameters stub_numpy2: true for a server whose stub is built against numpy 2)"
            )
        if len(config["input"]) != 1:
            raise pb_utils.TritonModelException(f"{name}: the tokenizer takes exactly one input (the text)")
        self.input_name = config["input"][0]["name"]
        here = os.path.join(args["model_repository"], args["model_version"], "tokenizer", "tokenizer.json")
        self.tokenizer = configure(Tokenizer.from_file(here), _param(config, "max_length", "512"),
                                   _param(config, "padding", "longest"), _param(config, "pad_token", None))
        types = {o["name"]: o["data_type"] for o in config["output"]}
        fields = _param(config, "fields", "input_ids:ids,attention_mask:attention_mask")
        self.fields = []
        for item in fields.split(","):
            out, field = item.split(":")
            if out not in types:
                raise pb_utils.TritonModelException(f"{name}: parameters.fields names {out!r}, not an output")
            self.fields.append((out, field, _NUMPY[types[out]]))
        self.batched = int(config.get("max_batch_size", 0)) > 0

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                tensor = pb_utils.get_input_tensor_by_name(request, self.input_name)
                if tensor is None:
                    raise ValueError(f"input {self.input_name!r} is missing")
                texts = [_text(v, i, self.input_name) for i, v in enumerate(tensor.as_numpy().reshape(-1))]
                encodings = self.tokenizer.encode_batch(texts)
                outputs = []
                for out, field, dtype in self.fields:
                    arr = np.array([getattr(e, field) for e in encodings], dtype=dtype)
                    outputs.append(pb_utils.Tensor(out, arr if self.batched else arr[0]))
                responses.append(pb_utils.InferenceResponse(output_tensors=outputs))
            except Exception as exc:
                # a bad element is the caller's mistake: INVALID_ARG where this backend has error codes
                code = getattr(pb_utils.TritonError, "INVALID_ARG", None) if isinstance(exc, ValueError) else None
                text = f"{type(exc).__name__}: {exc}"
                error = pb_utils.TritonError(text, code) if code is not None else pb_utils.TritonError(text)
                responses.append(pb_utils.InferenceResponse(error=error))
        return responses


def _text(value, i, name):
    """One element of the string input as text: UTF-8 bytes (what Triton's BYTES carries) or a str."""
    if not isinstance(value, bytes):
        return str(value)
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"input {name!r} element {i} is not UTF-8 text ({exc.reason} at byte {exc.start}); "
                         "send the string encoded as UTF-8") from None
