"""One rendering path for every config.pbtxt: values computed here, laid out by jinja2 templates.

Templates live in ``templates/`` (or ``--templates DIR``; a file missing there falls back to ours)
and are rendered with ``StrictUndefined``: a template that names a value we do not compute fails.
"""

from __future__ import annotations

from pathlib import Path

from . import __version__
from .errors import UserError
from .spec import ModelSpec, VariantSpec
from .variants import Variant

def _default_templates() -> Path:
    """``templates/`` of a checkout (or an editable install), else the copy installed as ``generator/_templates``."""
    here = Path(__file__).resolve().parent
    checkout = here.parent / "templates"
    if (checkout / "config.pbtxt.j2").is_file():
        return checkout
    return here / "_templates"


DEFAULT_TEMPLATES = _default_templates()
TARGETS = ("triton", "embedded")


def triton_model_name(model: str, variant: str) -> str:
    """The naming scheme: ``<model>__<variant>`` (variant keys keep their dashes)."""
    return f"{model}__{variant}"


def environment(templates: Path | None = None):
    import jinja2

    dirs = [str(templates)] if templates else []
    dirs.append(str(DEFAULT_TEMPLATES))
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(dirs),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=False,
        lstrip_blocks=False,
        autoescape=False,
    )


_ENVIRONMENTS: dict = {}


def _environment_cached(templates: Path | None = None):
    """One environment per templates folder: compiled templates are reused (jinja2 reloads changed files)."""
    key = str(templates) if templates else None
    if key not in _ENVIRONMENTS:
        _ENVIRONMENTS[key] = environment(templates)
    return _ENVIRONMENTS[key]


def _tensor(t, *, data_type=None) -> dict:
    return {"name": t.name, "data_type": data_type or t.dtype.triton, "dims": t.triton_dims()}


def warmup_entries(model: ModelSpec) -> list[dict]:
    opt = model.dims_at("opt")
    sizes = [1]
    if model.max_batch_size > 0:
        db = model.triton.dynamic_batching
        pref = max(db.preferred_batch_size) if db and db.preferred_batch_size else None
        if pref and pref > 1:
            sizes.append(pref)
    else:
        sizes = [0]
    out = []
    for b in sizes:
        out.append({
            "name": f"warmup_batch_{b}" if b else "warmup",
            "batch_size": max(b, 1),
            "inputs": [
                {
                    "name": t.name,
                    "data_type": t.dtype.triton,
                    "dims": list(t.concrete(opt)),
                    # token ids and masks must stay in range: zeros are always valid
                    "fill": "random_data" if t.dtype.is_float else "zero_data",
                }
                for t in model.inputs
            ],
        })
    return out


def config_context(model: ModelSpec, variant: Variant, vspec: VariantSpec, target: str = "triton",
                   spec_name: str = "spec.yaml") -> dict:
    if target not in TARGETS:
        raise UserError(f"--target {target}: not one of {', '.join(TARGETS)}")
    tr = model.triton
    params = dict(variant.extra_parameters(model, vspec.options))
    groups = [
        {"count": g.count, "kind": g.kind, "gpus": list(g.gpus), "profile": list(g.profile)}
        for g in tr.instance_group
    ]
    optimization = None
    if target == "embedded":
        platform, backend = None, "python"
        params.update({
            "runtime": variant.runtime,
            "artifact": variant.filename,
            "intra_op_threads": str(tr.intra_op_threads),
        })
        if variant.runtime == "onnxruntime" and variant.precision == "fp16":
            params["ort_graph_optimization_level"] = "extended"  # ORT's NchwcTransformer crashes on fp16 graphs
        if variant.runtime == "openvino" and vspec.options.get("inference_precision"):
            params["openvino_inference_precision"] = str(vspec.options["inference_precision"])
        for g in groups:  # the embedded server has no GPU backends: its runners take the CPU
            g.update(kind="KIND_CPU", gpus=[], profile=[])
        if not groups:
            groups = [{"count": 1, "kind": "KIND_CPU", "gpus": [], "profile": []}]
    else:
        platform, backend = variant.platform, variant.backend
        if variant.runtime == "onnxruntime" and tr.intra_op_threads:
            params["intra_op_thread_count"] = str(tr.intra_op_threads)
        if variant.runtime == "onnxruntime" and variant.precision == "fp16":
            # fp16 graphs crash ORT's NchwcTransformer at ALL: cap the server's level at EXTENDED (1)
            optimization = {"graph_level": 1, "gpu_accelerators": [], "cpu_accelerators": []}
    params.update(tr.parameters)
    db = tr.dynamic_batching if model.max_batch_size > 0 else None
    ctx = {
        "tool_version": __version__,
        "spec_name": spec_name,
        "model_name": model.name,
        "variant": variant.key,
        "name": triton_model_name(model.name, variant.key),
        "platform": platform,
        "backend": backend,
        "max_batch_size": model.max_batch_size,
        "default_model_filename": None,
        "inputs": [_tensor(t) for t in model.inputs],
        "outputs": [_tensor(t) for t in model.outputs],
        "version_policy": tr.version_policy,
        "dynamic_batching": None if db is None else {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
            "preserve_ordering": db.preserve_ordering,
        },
        "instance_groups": groups,
        "warmup": warmup_entries(model) if tr.warmup else [],
        "parameters": params,
        "optimization": optimization,
    }
    if target == "triton":
        accel = vspec.options.get("trt_accelerator")
        if accel is not None and variant.runtime == "onnxruntime":
            ctx["optimization"] = ctx["optimization"] or {"graph_level": None, "cpu_accelerators": []}
            ctx["optimization"]["gpu_accelerators"] = [ort_trt_accelerator_values(model, vspec, accel)]
        variant.adjust_config(model, vspec, ctx)
    return ctx


def ort_trt_accelerator_values(model: ModelSpec, vspec: VariantSpec, accel) -> dict:
    """``options.trt_accelerator: {precision: fp16, workspace_mb: 1024, engine_cache_path: /tmp}`` (or true)
    on an ONNX variant: ONNX Runtime's TensorRT execution provider inside Triton's onnxruntime
    backend. Needs no TensorRT at generation time; the profile comes from the spec."""
    from . import tensorrt as trt

    where = f"{model.where}.variants.{vspec.name}.options.trt_accelerator"
    if accel is True:
        accel = {}
    if not isinstance(accel, dict):
        raise UserError(f"{where}: expected true or a mapping {{precision, workspace_mb, engine_cache_path}}")
    unknown = [k for k in accel if k not in ("precision", "workspace_mb", "engine_cache_path")]
    if unknown:
        raise UserError(f"{where}.{unknown[0]}: unknown key; allowed: precision, workspace_mb, engine_cache_path")
    precision = str(accel.get("precision", "fp16")).lower()
    if precision not in ("fp32", "fp16", "int8"):
        raise UserError(f"{where}.precision: '{precision}' is not one of fp32, fp16, int8")
    profiles = trt.profiles_for(model)
    values = trt.ort_trt_accelerator(
        precision=precision,
        workspace_bytes=int(accel.get("workspace_mb", 1024)) * 1024 * 1024,
        engine_cache=True,
        engine_cache_path=str(accel.get("engine_cache_path", "/tmp")),
        profile=profiles[0] if profiles and profiles[0].dynamic else None,
    )
    return values


def render(context: dict, template: str, templates: Path | None = None) -> str:
    import jinja2

    env = _environment_cached(templates)
    try:
        text = env.get_template(template).render(**context)
    except jinja2.TemplateNotFound as e:
        raise UserError(f"--templates: template '{e.name}' not found in {templates or DEFAULT_TEMPLATES}")
    except jinja2.TemplateError as e:
        where = getattr(e, "filename", None) or template
        line = getattr(e, "lineno", None)
        raise UserError(f"{where}{':' + str(line) if line else ''}: template error: {e}; fix the template")
    lines = [ln.rstrip() for ln in text.splitlines()]
    out, blank = [], False
    for ln in lines:  # collapse the blank runs left by skipped blocks
        if not ln:
            if blank or not out:
                continue
            blank = True
        else:
            blank = False
        out.append(ln)
    return "\n".join(out).rstrip() + "\n"


def template_for(variant: Variant, target: str) -> str:
    return "python.pbtxt.j2" if target == "embedded" else variant.template


def preprocess_context(model: ModelSpec, spec_name: str) -> dict:
    """The python-backend preprocessing model: image bytes -> the model's image input.

    The encoded file travels as TYPE_UINT8 ``[-1]`` (one row per image, zero-padded to one length
    within a request), not TYPE_STRING: the python-backend stub of tritonserver <= 2.51 running
    numpy >= 2 corrupts string tensors, and uint8 works on every server."""
    pre = model.preprocess
    target = next(t for t in model.inputs if t.name == pre.input)
    db = model.triton.dynamic_batching if model.max_batch_size > 0 else None
    return {
        "tool_version": __version__, "spec_name": spec_name, "model_name": model.name, "variant": "preprocess",
        "name": triton_model_name(model.name, "preprocess"), "platform": None, "backend": "python",
        "max_batch_size": model.max_batch_size, "default_model_filename": None,
        "inputs": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [-1]}],
        "outputs": [_tensor(target)],
        "version_policy": None,
        "dynamic_batching": None if db is None else {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds, "preserve_ordering": False},
        "instance_groups": [{"count": pre.instances, "kind": "KIND_CPU", "gpus": [], "profile": []}],
        "warmup": [],
        "parameters": {
            "size": ",".join(map(str, pre.size)), "mean": ",".join(map(str, pre.mean)),
            "std": ",".join(map(str, pre.std)), "layout": pre.layout, "output_name": target.name,
        },
        "optimization": None,
    }


def ensemble_context(model: ModelSpec, variant_key: str, spec_name: str) -> dict:
    """image bytes -> <model>__preprocess -> <model>__<variant>; other inputs pass straight through."""
    pre = model.preprocess
    target = triton_model_name(model.name, variant_key)
    feeds = {t.name: t.name for t in model.inputs}
    feeds[pre.input] = "preprocessed"
    return {
        "tool_version": __version__, "spec_name": spec_name, "model_name": model.name, "variant": "ensemble",
        "name": triton_model_name(model.name, "ensemble"), "platform": "ensemble", "backend": None,
        "max_batch_size": model.max_batch_size, "default_model_filename": None,
        "inputs": [{"name": "image", "data_type": "TYPE_UINT8", "dims": [-1]}]
                  + [_tensor(t) for t in model.inputs if t.name != pre.input],
        "outputs": [_tensor(t) for t in model.outputs],
        "version_policy": None, "dynamic_batching": None, "instance_groups": [], "warmup": [],
        "parameters": {}, "optimization": None,
        "steps": [
            {"model_name": triton_model_name(model.name, "preprocess"), "input_map": {"image": "image"},
             "output_map": {pre.input: "preprocessed"}},
            {"model_name": target, "input_map": feeds, "output_map": {t.name: t.name for t in model.outputs}},
        ],
    }
