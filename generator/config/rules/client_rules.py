"""What Triton core and its example clients require of image formats and label files (backend_rules' ``@rule``).

Registered by ``generator/config/rules/__init__.py`` importing this module; run by ``tritongen validate`` and the build.
"""

from __future__ import annotations

import os

from generator.config.rules.framework import SRC, Target, problem, rule

SRC.update({
    "core_format": "triton core src/model_config_utils.cc ValidateModelInput: 'model input NHWC/NCHW require 3 dims'; "
                   "client src/python/examples/image_client.py parse_model (channels from the format, 1 or 3)",
    "core_labels": "triton core src/model.cc Model::Init: label_filename is read from the model directory (not outside "
                   "it), one label a line; server src/classification.cc TopkClassifications: score:index:label",
})


@rule("input-format", ("*",), "core_format", "FORMAT_NCHW/NHWC inputs have 3 non-batch dims, channels 1 or 3")
def check_input_format(t: Target):
    from tritonclient.grpc import model_config_pb2 as pb

    for io in t.cfg.input:
        if io.format == pb.ModelInput.FORMAT_NONE:
            continue
        fmt = pb.ModelInput.Format.Name(io.format)
        if fmt not in ("FORMAT_NCHW", "FORMAT_NHWC"):
            continue
        if len(io.dims) != 3:
            yield problem(f"{t.where}: input '{io.name}' format {fmt} needs 3 dims without the batch dim, it has "
                          f"{list(io.dims)}; fix dims or remove format")
            continue
        channels = io.dims[0] if fmt == "FORMAT_NCHW" else io.dims[2]
        if channels not in (-1, 1, 3):
            other = "FORMAT_NHWC" if fmt == "FORMAT_NCHW" else "FORMAT_NCHW"
            yield problem(f"{t.where}: input '{io.name}' format {fmt} puts {channels} channels at dim "
                          f"{0 if fmt == 'FORMAT_NCHW' else 2} of {list(io.dims)} (image clients send 1 or 3); "
                          f"use {other} or fix dims")


@rule("label-file", ("*",), "core_labels", "label_filename names a file inside the model folder, one label per class")
def check_label_file(t: Target):
    root = os.path.realpath(t.model_dir)
    for io in t.cfg.output:
        if not io.label_filename:
            continue
        path = os.path.realpath(os.path.join(t.model_dir, io.label_filename))
        if os.path.commonpath([root, path]) != root:
            yield problem(f"{t.where}: output '{io.name}' label_filename '{io.label_filename}' is outside the model "
                          "folder (Triton refuses to load it); put the file beside config.pbtxt")
            continue
        if not os.path.isfile(path):
            yield problem(f"{t.where}: output '{io.name}' label_filename '{io.label_filename}' does not exist (the "
                          "model fails to load); write it beside config.pbtxt or remove label_filename")
            continue
        with open(path, encoding="utf-8", errors="replace") as fh:
            count = len(fh.read().rstrip("\n").split("\n"))
        classes = io.dims[-1] if len(io.dims) else None
        if classes is not None and classes > 0 and count != classes:
            yield problem(f"{t.name}/{io.label_filename}: {count} labels for output '{io.name}' with {classes} classes "
                          f"(dims {list(io.dims)}); give one label a line per class")
