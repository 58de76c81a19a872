"""Keeping libraries' chatter out of the build's output: exporters, converters and quantizers log and warn per
tensor; what matters reaches the user through the verification table, the events and build.log."""

from __future__ import annotations

import contextlib
import logging
import warnings


def quiet_exporters() -> None:
    for name in ("torch.onnx", "torch.onnx._internal.exporter._registration", "onnxscript", "torch._dynamo",
                 "torch.export", "onnx_ir"):
        logging.getLogger(name).setLevel(logging.ERROR)


@contextlib.contextmanager
def quiet_libraries():
    """Converters and quantizers warn on every tensor (fp16 truncation) and log advice to the root
    logger; what matters reaches the user through the verification table and build.log."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        root.setLevel(level)
