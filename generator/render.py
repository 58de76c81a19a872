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
    notes: list[str] = []
    settings, graph_level = backend_settings(model, variant, vspec)
    params = dict(settings)
    groups = instance_groups(model, variant, vspec, target, notes)
    optimization = None
    if target == "embedded":
        platform, backend = None, "python"
        params.update({
            "runtime": variant.runtime,
            "artifact": variant.filename,
            "intra_op_threads": str(tr.intra_op_threads),
        })
        if graph_level:
            params["ort_graph_optimization_level"] = graph_level
        if variant.runtime == "openvino" and vspec.options.get("inference_precision"):
            params["openvino_inference_precision"] = str(vspec.options["inference_precision"])
    else:
        platform, backend = variant.platform, variant.backend
        if graph_level:
            optimization = {"graph_level": ORT_LEVEL_NUMBERS[graph_level], "gpu_accelerators": [], "cpu_accelerators": []}
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
        "dynamic_batching": None if db is None else dynamic_batching_values(db),
        "instance_groups": groups,
        "warmup": warmup_entries(model) if tr.warmup else [],
        "parameters": params,
        "optimization": optimization,
        "response_cache": tr.response_cache,
        "notes": notes,
    }
    if target == "triton":
        accel = vspec.options.get("trt_accelerator")
        if accel is not None and variant.runtime == "onnxruntime":
            ctx["optimization"] = ctx["optimization"] or {"graph_level": None, "cpu_accelerators": []}
            ctx["optimization"]["gpu_accelerators"] = [ort_trt_accelerator_values(model, vspec, accel)]
        variant.adjust_config(model, vspec, ctx)
    if tr.rate_limiter:
        for g in ctx["instance_groups"]:
            g["rate_limiter"] = tr.rate_limiter
    return ctx


# ----------------------------------------------------------------------------- native backend settings

NATIVE_BACKEND = {"onnxruntime": "onnxruntime", "openvino": "openvino", "torchscript": "pytorch",
                  "aoti": "pytorch"}  # runtime -> backend (aoti: the torch_aoti platform of the pytorch backend)
THREAD_KEYS = {"onnxruntime": "intra_op_thread_count", "openvino": "INFERENCE_NUM_THREADS", "pytorch": "INTRA_OP_THREAD_COUNT"}
# onnxruntime_backend src/onnxruntime.cc: optimization.graph.level -1 = BASIC, 1 = EXTENDED, 2 = DISABLE_ALL, else ALL
ORT_LEVEL_NUMBERS = {"basic": -1, "extended": 1, "disable": 2, "all": 0}
_LEVEL_ORDER = ("disable", "basic", "extended", "all")


def backend_settings(model: ModelSpec, variant: Variant, vspec: VariantSpec) -> tuple[dict, str | None]:
    """The native backend's config ``parameters`` for this variant, and ONNX Runtime's graph level name (None =
    the backend's default, all). One source for both targets: the triton config carries them for the native
    backend, the embedded config for the twin (templates/runner/model.py via generator/runtimes.py).

    Precedence: the variant's own (its options, e.g. OpenVINO's performance_hint) < ``triton.backend.<backend>``
    < nothing else; ``triton.intra_op_threads`` fills the backend's thread key when neither sets it."""
    native = NATIVE_BACKEND.get(variant.runtime)
    params = dict(variant.extra_parameters(model, vspec.options))
    spec_side = dict(model.triton.backend.get(native, {})) if native else {}
    level = spec_side.pop("graph_level", None)
    params.update(spec_side)
    if native and model.triton.intra_op_threads:
        params.setdefault(THREAD_KEYS[native], str(model.triton.intra_op_threads))
    if variant.runtime == "onnxruntime" and variant.precision == "fp16":
        # fp16 graphs crash ORT's NchwcTransformer at ALL: cap the level at EXTENDED
        capped = "extended" if level in (None, "all") else level
        level = capped
    if level == "all":
        level = None
    return params, level


def dynamic_batching_values(db) -> dict:
    return {
        "preferred_batch_size": list(db.preferred_batch_size),
        "max_queue_delay_microseconds": db.max_queue_delay_microseconds,
        "preserve_ordering": db.preserve_ordering,
        "priority_levels": db.priority_levels,
        "default_priority_level": db.default_priority_level,
        "default_queue_policy": db.default_queue_policy,
        "priority_queue_policy": dict(sorted(db.priority_queue_policy.items())),
    }


# ----------------------------------------------------------------------------------- device-aware groups


def _describe(groups: list[dict]) -> str:
    return "[" + ", ".join(f"{g['count']}x{g['kind'][5:]}" for g in groups) + "]" if groups else "[default]"


def instance_groups(model: ModelSpec, variant: Variant, vspec: VariantSpec, target: str, notes: list[str]) -> list[dict]:
    """Instance groups where the variant can run (``Variant.devices``). The triton target keeps the spec's
    groups that fit the variant (GPU-only variants get KIND_GPU groups, derived from the spec's count when it
    has none; CPU-only variants drop KIND_GPU groups; a GPU accelerator keeps the KIND_GPU ones) and raises a
    UserError when nothing the spec asks for can run the variant. The embedded target serves everything on CPU
    and says so in ``notes``."""
    groups = [{"count": g.count, "kind": g.kind, "gpus": list(g.gpus), "profile": list(g.profile)}
              for g in model.triton.instance_group]
    where = f"{model.where}.triton.instance_group"
    devices = set(variant.devices)
    gpu_accel = vspec.options.get("trt_accelerator") is not None and variant.runtime == "onnxruntime"

    def cpu(count: int) -> dict:
        return {"count": count, "kind": "KIND_CPU", "gpus": [], "profile": []}

    if target == "embedded":
        kept = [g for g in groups if g["kind"] != "KIND_GPU"] or groups
        adapted = [cpu(g["count"]) for g in kept] or [cpu(1)]
        if "cpu" not in devices:
            notes.append(f"embedded target: {variant.key} is a GPU variant ({variant.backend or variant.platform} on "
                         f"KIND_GPU in the triton target); the twin runs it on CPU here, for checking, not for speed")
        if adapted != groups:
            notes.append(f"embedded target: instance groups {_describe(groups)} served as {_describe(adapted)} "
                         "(the embedded server has no GPU)")
        return adapted
    gpu_groups = [g for g in groups if g["kind"] in ("KIND_GPU", "KIND_AUTO")]
    cpu_groups = [g for g in groups if g["kind"] in ("KIND_CPU", "KIND_AUTO")]
    if "cpu" not in devices:
        if gpu_groups:
            chosen = gpu_groups
        else:  # the spec's groups (count, gpus, profile) as KIND_GPU
            chosen = [{**g, "kind": "KIND_GPU"} for g in groups] or [{"count": 1, "kind": "KIND_GPU", "gpus": [], "profile": []}]
            notes.append(f"{variant.key} runs on GPU only: instance groups {_describe(groups)} rendered as "
                         f"{_describe(chosen)} (the spec's counts)")
            return chosen
    elif "gpu" not in devices:
        if groups and not cpu_groups:
            raise UserError(f"{where}: only KIND_GPU groups, but variant '{variant.key}' runs on CPU only "
                            f"({variant.backend or variant.platform}); add {{count: 1, kind: KIND_CPU}} or drop the variant")
        chosen = cpu_groups or [cpu(1)]
    elif gpu_accel:
        if groups and not gpu_groups:
            raise UserError(f"{model.where}.variants.{vspec.name}.options.trt_accelerator: a GPU accelerator applies only "
                            f"under KIND_GPU instances but {where} has only KIND_CPU groups; add {{count: 1, kind: KIND_GPU}}"
                            " or remove trt_accelerator")
        chosen = gpu_groups
    else:
        chosen = groups
    if groups and chosen != groups:
        notes.append(f"{variant.key} ({'/'.join(variant.devices)}): instance groups {_describe(groups)} rendered as "
                     f"{_describe(chosen)}")
    return chosen


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
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds, "preserve_ordering": False,
            "priority_levels": 0, "default_priority_level": 0, "default_queue_policy": None, "priority_queue_policy": {}},
        "instance_groups": [{"count": pre.instances, "kind": "KIND_CPU", "gpus": [], "profile": []}],
        "warmup": [], "response_cache": False, "notes": [],
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
        "parameters": {}, "optimization": None, "response_cache": False, "notes": [],
        "steps": [
            {"model_name": triton_model_name(model.name, "preprocess"), "input_map": {"image": "image"},
             "output_map": {pre.input: "preprocessed"}},
            {"model_name": target, "input_map": feeds, "output_map": {t.name: t.name for t in model.outputs}},
        ],
    }


# ------------------------------------------------------------------ text: tokenizer + ensemble (generator/hf.py)

TEXT_INPUT = "text"  # the ensemble's and the tokenizer's string input (TYPE_STRING, one string per row)


def tokenizer_context(model: ModelSpec, spec_name: str, target: str = "triton", execution_env: str | None = None,
                      pad_token: str | None = None) -> dict:
    """``<model>__tokenizer``: python backend on CPU, strings -> the model's input_ids / masks.

    ``execution_env``: EXECUTION_ENV_PATH, a numpy<2 environment with ``tokenizers`` for the stub (the
    embedded target passes tritongen's own; for the NGC server the spec's ``preprocess.text.execution_env``)."""
    pre = model.preprocess
    feeds = dict(pre.outputs)
    params = {"max_length": str(pre.max_length), "padding": pre.padding,
              "fields": ",".join(f"{name}:{field}" for name, field in pre.outputs)}
    if pad_token:
        params["pad_token"] = pad_token
    env = execution_env or pre.execution_env
    if env:
        params["EXECUTION_ENV_PATH"] = env
    return {
        "tool_version": __version__, "spec_name": spec_name, "model_name": model.name, "variant": "tokenizer",
        "name": triton_model_name(model.name, "tokenizer"), "platform": None, "backend": "python",
        "max_batch_size": model.max_batch_size, "default_model_filename": None,
        "inputs": [{"name": TEXT_INPUT, "data_type": "TYPE_STRING", "dims": [1]}],
        "outputs": [{"name": t.name, "data_type": t.dtype.triton, "dims": [-1]}
                    for t in model.inputs if t.name in feeds],
        "version_policy": None, "dynamic_batching": None,  # rows are padded per request
        "instance_groups": [{"count": pre.instances, "kind": "KIND_CPU", "gpus": [], "profile": []}],
        "warmup": [], "parameters": params, "optimization": None, "response_cache": False, "notes": [],
    }


def text_ensemble_context(model: ModelSpec, variant_key: str, spec_name: str) -> dict:
    """strings -> <model>__tokenizer -> <model>__<variant>; model inputs the tokenizer does not make pass through."""
    pre = model.preprocess
    feeds = dict(pre.outputs)
    return {
        "tool_version": __version__, "spec_name": spec_name, "model_name": model.name, "variant": "ensemble",
        "name": triton_model_name(model.name, "ensemble"), "platform": "ensemble", "backend": None,
        "max_batch_size": model.max_batch_size, "default_model_filename": None,
        "inputs": [{"name": TEXT_INPUT, "data_type": "TYPE_STRING", "dims": [1]}]
                  + [_tensor(t) for t in model.inputs if t.name not in feeds],
        "outputs": [_tensor(t) for t in model.outputs],
        "version_policy": None, "dynamic_batching": None, "instance_groups": [], "warmup": [],
        "parameters": {}, "optimization": None, "response_cache": False, "notes": [],
        "steps": [
            {"model_name": triton_model_name(model.name, "tokenizer"), "input_map": {TEXT_INPUT: TEXT_INPUT},
             "output_map": {name: f"tokens_{name}" for name in feeds}},
            {"model_name": triton_model_name(model.name, variant_key),
             "input_map": {t.name: (f"tokens_{t.name}" if t.name in feeds else t.name) for t in model.inputs},
             "output_map": {t.name: t.name for t in model.outputs}},
        ],
    }
