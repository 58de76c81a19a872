"""Rules that compare the config with its artifact: batch dim, OpenVINO batching, I/O names/types/dims, LibTorch."""

from __future__ import annotations

import re
from pathlib import Path

from generator.formats.pbtxt import model_dims
from generator.config.rules.framework import Target, _dtype_name, problem, rule, warning


def _noun(path: Path) -> str:
    return {".onnx": "graph", ".xml": "IR"}.get(path.suffix, "artifact")


@rule("batch-dim", ("onnxruntime",), "core_batch", "max_batch_size > 0 needs a dynamic first dim in the ONNX graph")
def check_batch_dim(t: Target):
    if t.cfg.max_batch_size <= 0:
        return
    for path in t.artifacts():
        sig, _ = t.signature(path)
        if not sig or "inputs" not in sig:
            continue
        for kind in ("inputs", "outputs"):
            for names, _, dims in sig[kind]:
                if dims is None or (dims and dims[0] == -1):
                    continue
                yield problem(f"{t.at(path)}: {kind[:-1]} '{names[0] if names else '?'}' has a fixed first dim {dims[:1]} "
                              f"in the {_noun(path)} but max_batch_size is {t.cfg.max_batch_size}; export with a dynamic "
                              "batch dim or set max_batch_size 0")
                return


@rule("openvino-batch", ("openvino",), "ov_batch",
      "with max_batch_size > 1 the backend runs every batch at max_batch_size: ENABLE_BATCH_PADDING=YES or smaller batches fail")
def check_openvino_batch(t: Target):
    if t.engine != "openvino" or t.cfg.max_batch_size <= 1:
        return  # max_batch_size 1: no batch is smaller
    if t.params.get("ENABLE_BATCH_PADDING", "").lower() != "yes":
        yield problem(f"{t.where}: max_batch_size {t.cfg.max_batch_size} without parameters ENABLE_BATCH_PADDING=YES: the "
                      f"openvino backend fixes the batch at {t.cfg.max_batch_size} (ov::set_batch) and refuses every smaller "
                      "batch; set ENABLE_BATCH_PADDING to YES (or max_batch_size 0)")


def _match_io(t: Target, path: Path, sig: dict):
    batched = t.cfg.max_batch_size > 0
    is_ov = t.stands_for == "openvino"
    reshape = is_ov and t.params.get("RESHAPE_IO_LAYERS", "").upper() == "YES"
    where, noun = t.at(path), _noun(path)
    for kind, declared in (("input", t.cfg.input), ("output", t.cfg.output)):
        real = sig[kind + "s"]
        by_name = {n: (dt, dims) for names, dt, dims in real for n in names}
        for tensor in declared:
            if tensor.name not in by_name:
                have = ", ".join(names[0] for names, _, _ in real if names) or "none"
                yield problem(f"{where}: {kind} '{tensor.name}' is not in {path.name} (it has {have}); use the {noun}'s names")
                continue
            dt, dims = by_name[tensor.name]
            want = _dtype_name(tensor.data_type)
            if dt != want:
                yield problem(f"{where}: {kind} '{tensor.name}' data_type {want} but the {noun} has {dt}; make them equal")
                continue
            if dims is None:
                continue
            if batched:
                dims = dims[1:]
            cdims = model_dims(tensor)
            if len(dims) != len(cdims):
                scalar = not dims and cdims == [1]  # one value per sample: Triton wants dims [1] + an empty reshape
                yield problem(f"{where}: {kind} '{tensor.name}' dims {cdims} but the {noun} has rank {len(dims)} {dims}"
                              f"{' after the batch dim' if batched else ''}; "
                              + ("add reshape: { shape: [ ] }" if scalar else "fix dims"))
                continue
            if is_ov and kind == "input" and -1 in cdims and not reshape:
                what = f"are dynamic where the IR is static {dims}" if all(d > 0 for d in dims) else "have a dynamic dim"
                yield problem(f"{where}: input '{tensor.name}' dims {cdims} {what}: the openvino backend takes -1 only "
                              "through reshaping (older releases reject -1); set parameters RESHAPE_IO_LAYERS=YES", "ov_io")
                continue
            for cd, ad in zip(cdims, dims):
                exact = is_ov and kind == "output"  # openvino_backend compares outputs exactly
                if (ad > 0 and cd != ad and cd != -1 and not (reshape and kind == "input")) or (exact and cd != ad):
                    yield problem(f"{where}: {kind} '{tensor.name}' dims {cdims} but the {noun} has {dims}; fix dims")
                    break
        if kind == "input":
            declared_names = {x.name for x in declared}
            missing = [names[0] for names, _, _ in real if names and not (set(names) & declared_names)]
            if missing:
                yield problem(f"{where}: {noun} input '{missing[0]}' is not declared; add it to input")


def _signatures(t: Target, hint: str = ""):
    """(path, signature, None) per artifact of ``t``, or (path, None, finding) when its signature cannot be read
    (a problem) or is not available here (a warning)."""
    for path in t.artifacts():
        sig, why = t.signature(path)
        if sig is None:
            yield path, None, (problem if why.startswith("cannot read") else warning)(f"{t.at(path)}: {why}{hint}")
        else:
            yield path, sig, None


@rule("io-match", ("onnxruntime", "openvino"), "ort_io",
      "input/output names, data types and dims equal the ONNX graph's / OpenVINO IR's")
def check_io_match(t: Target):
    for path, sig, finding in _signatures(t, "; rebuild the artifact"):
        if finding:
            yield finding
        elif "inputs" in sig:
            yield from _match_io(t, path, sig)


_NAMED_INDEX = re.compile(r"^.+__(\d+)$")


@rule("libtorch-io", ("pytorch",), "pt_io",
      "inputs = forward() arguments (by name, or <name>__<index>, else in order); outputs within what forward() returns")
def check_libtorch_io(t: Target):
    for path, sig, finding in _signatures(t):
        if finding:
            yield finding
            continue
        if "args" not in sig:
            continue
        where = t.at(path)
        args = sig["args"]
        names = [i.name for i in t.cfg.input]
        if not sig.get("required", len(args)) <= len(names) <= len(args):
            yield problem(f"{where}: config declares {len(names)} inputs but forward() takes {len(args)} "
                          f"({', '.join(args)}); declare one input per argument")
            continue
        args = args[:len(names)] if not all(n in args for n in names) else args
        if not all(n in args for n in names):
            idx = [_NAMED_INDEX.match(n) for n in names]
            if all(idx):
                bad = [n for n, m in zip(names, idx) if int(m.group(1)) >= len(args)]
                if bad:
                    yield problem(f"{where}: input '{bad[0]}' names index {_NAMED_INDEX.match(bad[0]).group(1)} but forward() "
                                  f"takes {len(args)} arguments; use <name>__0..{len(args) - 1}")
            else:
                moved = [n for i, n in enumerate(names) if n in args and args.index(n) != i]
                if moved:
                    yield problem(f"{where}: input '{moved[0]}' is forward() argument {args.index(moved[0])} but config "
                                  f"position {names.index(moved[0])}, and not every input is an argument name, so the backend "
                                  f"feeds by config order; name every input after forward() ({', '.join(args)}) or reorder")
                else:
                    yield warning(f"{where}: inputs {names} are neither forward() arguments ({', '.join(args)}) nor "
                                  "<name>__<index>; the backend feeds them in config order")
        outs = [o.name for o in t.cfg.output]
        n_out = sig.get("n_outputs")
        if n_out is not None and len(outs) > n_out:
            yield problem(f"{where}: config declares {len(outs)} outputs but forward() returns {n_out}; remove the extra outputs")
            continue
        oidx = [_NAMED_INDEX.match(n) for n in outs]
        if outs and all(oidx) and n_out is not None:
            bad = [n for n, m in zip(outs, oidx) if int(m.group(1)) >= n_out]
            if bad:
                yield problem(f"{where}: output '{bad[0]}' refers to output index {_NAMED_INDEX.match(bad[0]).group(1)} but "
                              f"forward() returns {n_out}; use <name>__0..{n_out - 1}")


@rule("libtorch-dtype", ("pytorch",), "pt_dtype", "data types LibTorch has (no unsigned 16/32/64-bit)")
def check_libtorch_dtype(t: Target):
    if t.engine != "pytorch":
        return
    for kind, tensors in (("input", t.cfg.input), ("output", t.cfg.output)):
        for tensor in tensors:
            dt = _dtype_name(tensor.data_type)
            if dt in ("TYPE_UINT16", "TYPE_UINT32", "TYPE_UINT64"):
                yield problem(f"{t.where}: {kind} '{tensor.name}' data_type {dt} has no torch dtype; use a signed type "
                              "(e.g. TYPE_INT64)")
