"""A config.pbtxt read with Triton's own schema (``tritonclient.grpc.model_config_pb2``): the one parser every
reader of configs uses (validation, the backend rules, publish, perf). Below validate and the rules, so both use it."""

from __future__ import annotations

import re


def parse_config(text: str, where: str):
    """Parse with ``tritonclient.grpc.model_config_pb2`` (Triton's schema). Returns (config, problem)."""
    from google.protobuf import text_format
    from tritonclient.grpc import model_config_pb2

    cfg = model_config_pb2.ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as e:
        msg = str(e)
        m = re.match(r"^(\d+):(\d+) ?: ?(.*)$", msg, re.S)
        if m:
            return None, f"{where}:{m.group(1)}:{m.group(2)}: {m.group(3).strip()} (Triton's model_config schema)"
        return None, f"{where}: {msg} (Triton's model_config schema)"
    return cfg, None


def model_dims(tensor) -> list[int]:
    """A config input's or output's dims as the model sees them (batch dim aside): its ``reshape`` shape where it
    has one (a per-sample scalar: dims [1], reshape []), else its ``dims``."""
    return list(tensor.reshape.shape) if tensor.HasField("reshape") else list(tensor.dims)
