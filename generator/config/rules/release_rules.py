"""Release-aware native-backend rules (registered with generator/config/rules/'s ``@rule`` API).

They read the target release of ``tritongen validate --triton-version R`` (``Target.release``; default the
newest in generator/tables/releases.py) and the behaviours the release table lists for it. Findings are one line each,
as every rule's: ``<model>/<file>: what is wrong; the fix [rule-id: source]``.
"""

from __future__ import annotations

from pathlib import Path

from generator.tables import releases
from generator.config.rules.framework import SRC, Target, problem, rule, warning

SRC.update({
    "pt_interop": releases.BEHAVIOURS["pytorch_interop_abort"].source,
    "ov_pad_bug": releases.BEHAVIOURS["openvino_padding_bug"].source,
    "ov_autocomplete": releases.BEHAVIOURS["openvino_autocomplete_batch"].source,
    "ov_error_log": releases.BEHAVIOURS["openvino_missing_param_error_log"].source,
    "pt_outputs": releases.BEHAVIOURS["pytorch_output_order"].source,
})


def _release(t: Target) -> releases.Release | None:
    """The release ``tritongen validate --triton-version`` (or the build) targets; None: release-agnostic run."""
    name = getattr(t, "release", None)
    return releases.release(name) if name else None


def _sibling_configs(t: Target):
    """(folder name, parsed config) of the other models in the repository."""
    from generator.formats.pbtxt import parse_config

    for d in sorted(t.model_dir.parent.iterdir()):
        cfg_path = d / "config.pbtxt"
        if d == t.model_dir or not cfg_path.is_file():
            continue
        cfg, _ = parse_config(cfg_path.read_text(), f"{d.name}/config.pbtxt")
        if cfg is not None:
            yield d.name, cfg


def _sets_interop(cfg) -> bool:
    from generator.config.rules.framework import normalize_engine

    engine = normalize_engine(cfg)
    runtime = cfg.parameters["runtime"].string_value if "runtime" in cfg.parameters else ""
    value = cfg.parameters["INTER_OP_THREAD_COUNT"].string_value if "INTER_OP_THREAD_COUNT" in cfg.parameters else ""
    return (engine == "pytorch" or (engine == "python" and runtime == "torchscript")) and value.strip() not in ("", "0") \
        and not value.strip().startswith("-")


@rule("pytorch-interop-threads", ("pytorch",), "pt_interop",
      "before 25.11 no repository sets INTER_OP_THREAD_COUNT in a pytorch model: a second call aborts tritonserver")
def check_interop_threads(t: Target):
    rel = _release(t)
    if rel is None or not rel.has("pytorch_interop_abort") or not _sets_interop(t.cfg):
        return
    others = [name for name, cfg in _sibling_configs(t) if _sets_interop(cfg)]
    if others:
        yield problem(f"{t.where}: parameters INTER_OP_THREAD_COUNT, also set by {', '.join(others)}: Triton {rel.name}'s "
                      "pytorch backend calls at::set_num_interop_threads once per model and the second call aborts the "
                      "server; remove it from every pytorch model (tritongen writes it into none before 25.11)")
    else:
        yield warning(f"{t.where}: parameters INTER_OP_THREAD_COUNT: on Triton {rel.name} reloading this model (model "
                      "control, repository polling) calls at::set_num_interop_threads again and aborts the server; "
                      "remove it (fixed in 25.11)")


def _padding_on(t: Target) -> bool:
    return t.params.get("ENABLE_BATCH_PADDING", "").strip().lower() == "yes"


@rule("openvino-padding-bug", ("openvino",), "ov_pad_bug",
      "max_batch_size > 1: executions adding up to max_batch_size fail (stale batch padding); serve at max_batch_size 1")
def check_openvino_padding(t: Target):
    rel = _release(t)
    mbs = t.cfg.max_batch_size
    if rel is None or t.stands_for != "openvino" or mbs <= 1 or not rel.has("openvino_padding_bug"):
        return  # max_batch_size 1: every execution is one batch-1 request = max_batch_size, never padded
    full = [w.name for w in t.cfg.model_warmup if w.batch_size == mbs and mbs > 1]
    if full and _padding_on(t):
        yield problem(f"{t.where}: model_warmup '{full[0]}' batch_size {mbs} = max_batch_size with ENABLE_BATCH_PADDING: "
                      f"Triton {rel.name}'s openvino backend runs it as {mbs} requests of batch 1 and fails the last "
                      f"('expected batch size of at least {mbs} in model output, got {mbs - 1}'): the model does not "
                      "load; use max_batch_size 1 (tritongen renders that)")
        return
    how = ("every execution whose requests add up to exactly max_batch_size (a full request after a smaller one, or "
           "merged by the dynamic batcher) fails its last request (stale batch padding)") if _padding_on(t) else \
          "every execution smaller than max_batch_size is refused (no ENABLE_BATCH_PADDING)"
    yield problem(f"{t.where}: max_batch_size {mbs} on Triton {rel.name}'s openvino backend: {how}; serve it without "
                  "Triton batching: max_batch_size 1 (tritongen renders that; batch-1 executions never pad)")


def ir_batch_layouts(path: Path) -> list[tuple[str, str, bool]]:
    """(port name, layout, has a batch 'N' dim) for every input and output of an IR."""
    import openvino as ov

    model = ov.Core().read_model(str(path))
    out = []
    for port in list(model.inputs) + list(model.outputs):
        layout = ov.layout_helpers.get_layout(port)
        text = layout.to_string()
        out.append((port.get_any_name(), text, bool(text and text != "[]" and layout.has_name("N"))))
    return out


@rule("openvino-ir-layout", ("openvino",), "ov_autocomplete",
      "batched: every IR input/output has an 'N' layout (else a warning at load); unbatched: none has (auto-complete "
      "would batch it)")
def check_openvino_layout(t: Target):
    if t.engine != "openvino":
        return
    for path in t.artifacts():
        if path.suffix != ".xml":
            continue
        try:
            ports = ir_batch_layouts(path)
        except ImportError as e:
            yield warning(f"{t.at(path)}: cannot check the IR's layouts here ({e}); install openvino to check")
            continue
        except Exception as e:
            yield problem(f"{t.at(path)}: cannot read the IR ({str(e).splitlines()[0][:150] if str(e) else type(e).__name__})")
            continue
        without = [name for name, _, has_n in ports if not has_n]
        if t.cfg.max_batch_size > 0 and without:
            yield warning(f"{t.at(path)}: '{without[0]}' has no batch layout in the IR while max_batch_size is "
                          f"{t.cfg.max_batch_size}: the openvino backend logs 'model layout ... does not support batching'; "
                          "set the layouts (e.g. \"N...\") before ov.save_model")
        elif t.cfg.max_batch_size == 0 and ports and not without:
            yield problem(f"{t.at(path)}: every IR port has a batch layout but max_batch_size is 0: the openvino backend's "
                          "auto-complete turns batching on (max_batch_size := default-max-batch-size) and the dims no "
                          "longer fit; save the IR without layouts or set max_batch_size")


@rule("openvino-parameters-explicit", ("openvino",), "ov_error_log",
      "every parameter the openvino backend reads is written (\"\" = unset); a missing one is an error-level log line")
def check_openvino_explicit(t: Target):
    rel = _release(t)
    if rel is None or t.engine != "openvino" or not rel.has("openvino_missing_param_error_log"):
        return
    missing = [k for k in releases.OPENVINO_PARAMETERS if k not in t.params]
    if missing:
        yield warning(f"{t.where}: parameters {', '.join(missing)} not written: Triton {rel.name}'s openvino backend logs "
                      "'error when reading parameters' for each; write them (string_value \"\" means unset)")


def declared_outputs(manifest: dict | None) -> list[str]:
    """The output names the artifact was built with (manifest ``outputs``, else its verification checks' order)."""
    if not manifest:
        return []
    if manifest.get("outputs"):
        return list(manifest["outputs"])
    names: list[str] = []
    for c in (manifest.get("verification") or {}).get("checks") or []:
        if c.get("output") and c["output"] not in names:
            names.append(c["output"])
    return names


@rule("libtorch-output-names", ("pytorch",), "pt_outputs",
      "outputs named <name>__<index>, or exactly the model's declared names in order (the backend maps by config order)")
def check_libtorch_outputs(t: Target):
    import re

    declared = declared_outputs(t.manifest)
    names = [o.name for o in t.cfg.output]
    if not declared or not names:
        return
    if all(re.match(r"^.+__\d+$", n) for n in names):
        bad = [n for n in names if int(n.rsplit("__", 1)[1]) >= len(declared)]
        if bad:
            yield problem(f"{t.where}: output '{bad[0]}' names index {bad[0].rsplit('__', 1)[1]} but the model returns "
                          f"{len(declared)} outputs ({', '.join(declared)}); use OUTPUT__0..{len(declared) - 1}")
        return
    for i, n in enumerate(names):
        if i >= len(declared) or n != declared[i]:
            which = f"the model's output {i} is '{declared[i]}'" if i < len(declared) else \
                f"the model returns {len(declared)} outputs"
            yield problem(f"{t.where}: output '{n}' at position {i}: {which}; not every output is <name>__<index>, so "
                          f"the pytorch backend maps outputs by config order and '{n}' would serve another tensor under "
                          f"the wrong name; name them {', '.join(declared)} (in that order) or OUTPUT__0..{len(declared) - 1}")
            return
