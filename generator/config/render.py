"""One rendering path for every config.pbtxt: values computed here, laid out by jinja2 templates.

Templates live in ``templates/`` (or ``--templates DIR``; a file missing there falls back to ours)
and are rendered with ``StrictUndefined``: a template that names a value we do not compute fails.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from pathlib import Path

from generator import __version__
from generator.tables import backends
from generator.errors import UserError
from generator.spec import ModelSpec, VariantSpec

if TYPE_CHECKING:  # the variant declaration only, never the build code
    from generator.variants.base import Variant

def _default_templates() -> Path:
    """``templates/`` of a checkout (or an editable install), else the copy installed as ``generator/_templates``."""
    package = Path(__file__).resolve().parents[1]  # generator/
    checkout = package.parent / "templates"
    if (checkout / "config.pbtxt.j2").is_file():
        return checkout
    return package / "_templates"


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
    """A config tensor. A scalar per sample (shape []) is dims [1] with ``reshape: { shape: [ ] }``: Triton needs
    non-empty dims, and its core turns the client's [batch, 1] into the model's [batch] (and back for outputs)."""
    dims = t.triton_dims()
    return {"name": t.name, "data_type": data_type or t.dtype.triton, "dims": dims or [1],
            **({} if dims else {"reshape": []})}


def _api_only(tensors: list[dict]) -> list[dict]:
    """An ensemble's tensors: the API dims only (a reshape is its composing model's business)."""
    return [{k: v for k, v in t.items() if k != "reshape"} for t in tensors]


def _inputs(tensors) -> list[dict]:
    """Config inputs, with the image ``format`` Triton's clients lay images out by (generator/formats/classes.py)."""
    return [{**_tensor(t), "format": getattr(t, "format", None)} for t in tensors]


def _outputs(tensors) -> list[dict]:
    """Config outputs, with ``label_filename`` where the spec gives class labels (generator/formats/classes.py)."""
    from generator.formats.classes import label_files

    files = label_files(tensors)
    return [{**_tensor(t), "label_filename": files.get(t.name)} for t in tensors]


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
                    "dims": list(t.concrete(opt)) or [1],  # the API's dims: a per-sample scalar is [1]
                    # token ids and masks must stay in range: zeros are always valid
                    "fill": "random_data" if t.dtype.is_float else "zero_data",
                }
                for t in model.inputs
            ],
        })
    return out


# ------------------------------------------------------------------------------------------ the config path


def base_context(model: ModelSpec, variant: str, spec_name: str) -> dict:
    """Every key the base template (templates/config.pbtxt.j2) reads, at its neutral value: each kind of config
    (a variant's, the ensemble's, the helpers') starts here and sets what it has. A key added to the base template
    is added here, once."""
    return {
        "tool_version": __version__,
        "spec_name": spec_name,
        "model_name": model.name,
        "variant": variant,
        "name": triton_model_name(model.name, variant),
        "platform": None,
        "backend": None,
        "max_batch_size": model.max_batch_size,
        "default_model_filename": None,
        "inputs": [],
        "outputs": [],
        "version_policy": None,
        "dynamic_batching": None,
        "instance_groups": [],
        "warmup": [],
        "parameters": {},
        "optimization": None,
        "response_cache": False,
        "notes": [],
    }


def config_context(model: ModelSpec, variant: Variant, vspec: VariantSpec, target: str = "triton",
                   spec_name: str = "spec.yaml", release: str | None = None) -> dict:
    """The values of one variant's config.pbtxt, from the model spec, the variant, its backend's table entry
    (generator/tables/backends.py) and the target, in these steps:

    1. the native backend's ``parameters`` and ONNX Runtime's graph level (:func:`native_parameters`);
    2. the model's tensors, batching, versions, warm-up and cache (:func:`model_values`);
    3. the instance groups where the variant runs (:func:`instance_groups`);
    4. the engine: the native backend (platform/backend, ``optimization``: :func:`native_engine`) for the triton
       target, the python-backend twin running the same artifact with the same settings (:func:`twin_engine`)
       for the embedded one;
    5. the spec's own ``triton.parameters`` over everything, and its rate limiter on every group;
    6. the target release's workarounds (``release``: generator/tables/releases.py; default the newest, 24.10 for the
       embedded target; :func:`generator.config.release_config.adjust`)."""
    if target not in TARGETS:
        raise UserError(f"--target {target}: not one of {', '.join(TARGETS)}")
    tr = model.triton
    ctx = base_context(model, variant.key, spec_name)
    params, graph_level = native_parameters(model, variant, vspec)
    ctx.update(model_values(model))
    ctx["instance_groups"] = instance_groups(model, variant, vspec, target, ctx["notes"])
    if variant.runtime == "openvino":
        params = openvino_shared_model(model, vspec, params, ctx["instance_groups"], ctx["notes"])
    engine = twin_engine if target == "embedded" else native_engine
    ctx.update(engine(model, variant, vspec, params, graph_level))
    ctx["parameters"].update(tr.parameters)
    if tr.rate_limiter:
        for g in ctx["instance_groups"]:
            g["rate_limiter"] = tr.rate_limiter
    from generator.config import release_config
    from generator.tables import releases

    ctx["release"] = releases.release(release or (releases.EMBEDDED if target == "embedded" else None)).name
    return release_config.adjust(ctx, variant.runtime, releases.release(ctx["release"]), target)


def model_values(model: ModelSpec) -> dict:
    """What the model spec alone decides: tensors, dynamic batching, version policy, warm-up, response cache."""
    tr = model.triton
    db = tr.dynamic_batching if model.max_batch_size > 0 else None
    return {
        "inputs": _inputs(model.inputs),
        "outputs": _outputs(model.outputs),
        "version_policy": tr.version_policy,
        "dynamic_batching": None if db is None else dynamic_batching_values(db),
        "warmup": warmup_entries(model) if tr.warmup else [],
        "response_cache": tr.response_cache,
    }


def native_engine(model: ModelSpec, variant: Variant, vspec: VariantSpec, params: dict, graph_level: str | None) -> dict:
    """The triton target: the variant's native backend reads ``params`` and ``optimization``."""
    return {"platform": variant.platform, "backend": variant.config_backend, "parameters": dict(params),
            "optimization": OPTIMIZATION.get(variant.backend, _no_optimization)(model, variant, vspec, graph_level)}


def twin_engine(model: ModelSpec, variant: Variant, vspec: VariantSpec, params: dict, graph_level: str | None) -> dict:
    """The embedded target: the python backend's runner (templates/runner/model.py) opens the variant's artifact with
    its runtime (generator/serve/runtimes.py) and the native backend's ``params``; tritongen's runner keys follow them."""
    twin = dict(params)
    twin.update({
        "runtime": variant.runtime,
        "artifact": variant.filename,
        backends.PYTHON.thread_key: str(model.triton.intra_op_threads),
    })
    if graph_level:
        twin["ort_graph_optimization_level"] = graph_level
    if variant.runtime == "openvino" and vspec.options.get("inference_precision"):
        twin["openvino_inference_precision"] = str(vspec.options["inference_precision"])
    return {"platform": backends.PYTHON.platform, "backend": backends.PYTHON.config_backend, "parameters": twin,
            "optimization": None}


# --------------------------------------------------------------------------------- native backend settings

ORT_LEVEL_NUMBERS = backends.ORT_GRAPH_LEVELS
_LEVEL_ORDER = backends.ORT_GRAPH_LEVEL_ORDER


def native_parameters(model: ModelSpec, variant: Variant, vspec: VariantSpec) -> tuple[dict, str | None]:
    """The native backend's config ``parameters`` for this variant, and ONNX Runtime's graph level name (None =
    the backend's default, all). One source for both targets: the triton config carries them for the native
    backend, the embedded config for the twin (templates/runner/model.py via generator/serve/runtimes.py).

    Precedence: the variant's own (its options, e.g. OpenVINO's performance_hint) < ``triton.backend.<backend>``
    < nothing else; ``triton.intra_op_threads`` fills the backend's thread key when neither sets it; the level is
    capped at the variant's ``max_graph_level``."""
    entry = variant.entry
    params = dict(variant.extra_parameters(model, vspec.options))
    spec_side = dict(model.triton.backend.get(entry.name, {}))
    level = spec_side.pop("graph_level", None)
    params.update(spec_side)
    if entry.thread_key and model.triton.intra_op_threads:
        params.setdefault(entry.thread_key, str(model.triton.intra_op_threads))
    cap = variant.max_graph_level
    if cap and _LEVEL_ORDER.index(level or "all") > _LEVEL_ORDER.index(cap):
        level = cap
    if level == "all":
        level = None
    return params, level


def _ort_optimization(model: ModelSpec, variant: Variant, vspec: VariantSpec, graph_level: str | None) -> dict | None:
    """ONNX Runtime: ``optimization.graph.level`` and the TensorRT execution accelerator (``options.trt_accelerator``)."""
    optimization = None
    if graph_level:
        optimization = {"graph_level": ORT_LEVEL_NUMBERS[graph_level], "gpu_accelerators": [], "cpu_accelerators": []}
    accel = vspec.options.get("trt_accelerator")
    if accel is not None:
        optimization = optimization or {"graph_level": None, "cpu_accelerators": []}
        optimization["gpu_accelerators"] = [ort_trt_accelerator_values(model, vspec, accel)]
    return optimization


def _plan_optimization(model: ModelSpec, variant: Variant, vspec: VariantSpec, graph_level: str | None) -> dict:
    """TensorRT: the config must fit the plan's profiles (UserError with the numbers); optional CUDA graphs."""
    from generator.config import trt_profiles

    trt_profiles.check_config_against_profiles(model, trt_profiles.profiles_for(model, vspec))
    return {"cuda_graphs": bool(vspec.options.get("cuda_graphs", False))}


def _no_optimization(model, variant, vspec, graph_level) -> None:
    return None


OPTIMIZATION = {"onnxruntime": _ort_optimization, "tensorrt": _plan_optimization}  # backend -> its ``optimization``


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


def openvino_shared_model(model: ModelSpec, vspec: VariantSpec, params: dict, groups: list[dict],
                          notes: list[str]) -> dict:
    """Triton's openvino backend compiles a model once and gives each instance one infer request on it
    (openvino.cc: ``ModelNotLoaded`` -> ``LoadModel`` once per model, ``CreateInferRequest`` per instance), so
    INFERENCE_NUM_THREADS and NUM_STREAMS belong to the model, shared by its instances, and an instance's request
    waits when every stream is busy. The spec's ``intra_op_threads`` is per instance: N instances of t threads
    render INFERENCE_NUM_THREADS = N*t and NUM_STREAMS = N (a stream per instance), unless the variant's options
    or ``triton.backend.openvino`` set them."""
    n = sum(int(g["count"]) for g in groups)
    if n <= 1:
        return params
    out = dict(params)
    given = model.triton.backend.get("openvino", {})
    t = model.triton.intra_op_threads
    if t and "INFERENCE_NUM_THREADS" not in given:
        out["INFERENCE_NUM_THREADS"] = str(n * t)
    if vspec.options.get("num_streams") is None and "NUM_STREAMS" not in given:
        out["NUM_STREAMS"] = str(n)
    streams = str(out.get("NUM_STREAMS", ""))
    if streams.isdigit() and int(streams) < n:
        notes.append(f"{model.where}: NUM_STREAMS {streams} < {n} instances: the openvino backend shares one compiled "
                     f"model, so only {streams} instance(s) compute at a time; drop NUM_STREAMS to get one per instance")
    return out


def instance_groups(model: ModelSpec, variant: Variant, vspec: VariantSpec, target: str, notes: list[str]) -> list[dict]:
    """Instance groups where the variant can run (``Variant.devices``). The triton target keeps the spec's
    groups that fit the variant (GPU-only variants get KIND_GPU groups, derived from the spec's count when it
    has none; CPU-only variants drop KIND_GPU groups; a GPU accelerator keeps the KIND_GPU ones) and raises a
    UserError when nothing the spec asks for can run the variant. The embedded target serves everything on CPU
    and says so in ``notes``."""
    groups = [{"count": g.count, "kind": g.kind, "gpus": list(g.gpus), "profile": list(g.profile)}
              for g in model.triton.instance_group]
    where = f"{model.where}.triton.instance_group"
    devices = set(variant.devices_of(vspec.options))
    gpu_accel = vspec.options.get("trt_accelerator") is not None and variant.backend == "onnxruntime"

    def cpu(count: int) -> dict:
        return {"count": count, "kind": "KIND_CPU", "gpus": [], "profile": []}

    if target == "embedded":
        kept = [g for g in groups if g["kind"] != "KIND_GPU"] or groups
        adapted = [cpu(g["count"]) for g in kept] or [cpu(1)]
        if "cpu" not in devices:
            notes.append(f"embedded target: {variant.key} is a GPU variant ({variant.served_by} on "
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
                            f"({variant.served_by}); add {{count: 1, kind: KIND_CPU}} or drop the variant")
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
    from generator.config import trt_profiles as trt

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


def _template_frame(e: Exception, env) -> tuple[str, int] | None:
    """For an error raised while rendering (an undefined name): the template file and line it happened in, which is
    the base template when a child extends it (jinja2 puts the templates' own lines into the traceback)."""
    import traceback

    if getattr(e, "lineno", None):  # a syntax error knows its place
        return None
    names = set(env.list_templates())
    for frame in reversed(traceback.extract_tb(e.__traceback__)):
        name = next((n for n in names if frame.filename.endswith("/" + n) or frame.filename == n), None)
        if name:
            return frame.filename, frame.lineno
    return None


def render(context: dict, template: str, templates: Path | None = None) -> str:
    import jinja2

    env = _environment_cached(templates)
    try:
        text = env.get_template(template).render(**context)
    except jinja2.TemplateNotFound as e:
        raise UserError(f"--templates: template '{e.name}' not found in {templates or DEFAULT_TEMPLATES}")
    except jinja2.TemplateError as e:
        where, line = _template_frame(e, env) or (getattr(e, "filename", None) or template, getattr(e, "lineno", None))
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
    return backends.PYTHON.template if target == "embedded" else variant.template


def image_input(model: ModelSpec) -> dict:
    """The ensemble's (and the preprocessing model's) encoded-image input.

    ``preprocess.image.dtype: string`` (the default): TYPE_STRING ``[1]``, one encoded file per element, so a
    batch may mix sizes and formats (Triton's ensemble_image_client sends this). ``uint8``: TYPE_UINT8 ``[-1]``,
    one row per image, zero-padded to one length within a request."""
    if getattr(model.preprocess, "dtype", "string") == "uint8":
        return {"name": "image", "data_type": "TYPE_UINT8", "dims": [-1]}
    return {"name": "image", "data_type": "TYPE_STRING", "dims": [1]}


def preprocess_context(model: ModelSpec, spec_name: str, execution_env: str | None = None) -> dict:
    """The python-backend preprocessing model: image bytes -> the model's image input.

    String images need a stub that moves TYPE_STRING tensors correctly: the python-backend stub of
    tritonserver <= 2.51 running numpy >= 2 corrupts them, so the embedded target passes ``execution_env``
    (EXECUTION_ENV_PATH: tritongen's numpy<2 + Pillow environment)."""
    pre = model.preprocess
    target = next(t for t in model.inputs if t.name == pre.input)
    db = model.triton.dynamic_batching if model.max_batch_size > 0 else None
    return {
        **base_context(model, "preprocess", spec_name),
        "backend": backends.PYTHON.config_backend,
        "inputs": [image_input(model)],
        "outputs": [_tensor(target)],
        "dynamic_batching": None if db is None else {
            "preferred_batch_size": list(db.preferred_batch_size),
            "max_queue_delay_microseconds": db.max_queue_delay_microseconds, "preserve_ordering": False,
            "priority_levels": 0, "default_priority_level": 0, "default_queue_policy": None, "priority_queue_policy": {}},
        "instance_groups": [_cpu_group(pre.instances)],
        "parameters": {
            "size": ",".join(map(str, pre.size)), "mean": ",".join(map(str, pre.mean)),
            "std": ",".join(map(str, pre.std)), "layout": pre.layout, "output_name": target.name,
            **({"EXECUTION_ENV_PATH": execution_env}
               if execution_env and image_input(model)["data_type"] == "TYPE_STRING" else {}),
        },
    }


def _cpu_group(count: int) -> dict:
    return {"count": count, "kind": "KIND_CPU", "gpus": [], "profile": []}


def _ensemble_base(model: ModelSpec, spec_name: str, inputs: list[dict], steps: list[dict]) -> dict:
    """An ensemble's config: the base keys, the ensemble platform, its own inputs, the model's outputs, its steps."""
    return {
        **base_context(model, "ensemble", spec_name),
        "platform": backends.ENSEMBLE.platform,
        "inputs": _api_only(inputs),
        "outputs": _api_only(_outputs(model.outputs)),
        "steps": steps,
    }


def ensemble_context(model: ModelSpec, variant_key: str, spec_name: str) -> dict:
    """image bytes -> <model>__preprocess -> <model>__<variant>; other inputs pass straight through."""
    pre = model.preprocess
    target = triton_model_name(model.name, variant_key)
    feeds = {t.name: t.name for t in model.inputs}
    feeds[pre.input] = "preprocessed"
    return _ensemble_base(
        model, spec_name,
        [image_input(model)] + _inputs([t for t in model.inputs if t.name != pre.input]),
        [
            {"model_name": triton_model_name(model.name, "preprocess"), "input_map": {"image": "image"},
             "output_map": {pre.input: "preprocessed"}},
            {"model_name": target, "input_map": feeds, "output_map": {t.name: t.name for t in model.outputs}},
        ])


def cap_to_member(ctx: dict, cap: int | None, member: str) -> str | None:
    """Triton refuses an ensemble whose max_batch_size exceeds a step model's ('ensemble ... allows maximum batch
    size 8, but it contains model ... which only allows maximum batch size to be 1'): the ensemble and its helper
    model take the member's, and the helper's preferred batch sizes above it go."""
    if cap is None or cap <= 0 or ctx.get("max_batch_size", 0) <= cap:
        return None
    note = (f"max_batch_size {cap} (spec: {ctx['max_batch_size']}): the member {member} is served at {cap}, and an "
            "ensemble may not batch more than its models")
    from generator.config.release_config import cap_max_batch

    cap_max_batch(ctx, cap)
    return note


# ------------------------------------------------------------------ text: tokenizer + ensemble (generator/loading/hf.py)

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
        **base_context(model, "tokenizer", spec_name),
        "backend": backends.PYTHON.config_backend,
        "inputs": [{"name": TEXT_INPUT, "data_type": "TYPE_STRING", "dims": [1]}],
        "outputs": [{"name": t.name, "data_type": t.dtype.triton, "dims": [-1]}
                    for t in model.inputs if t.name in feeds],
        # no dynamic_batching: rows are padded per request
        "instance_groups": [_cpu_group(pre.instances)],
        "parameters": params,
    }


def text_ensemble_context(model: ModelSpec, variant_key: str, spec_name: str) -> dict:
    """strings -> <model>__tokenizer -> <model>__<variant>; model inputs the tokenizer does not make pass through."""
    pre = model.preprocess
    feeds = dict(pre.outputs)
    return _ensemble_base(
        model, spec_name,
        [{"name": TEXT_INPUT, "data_type": "TYPE_STRING", "dims": [1]}] + _inputs([t for t in model.inputs if t.name not in feeds]),
        [
            {"model_name": triton_model_name(model.name, "tokenizer"), "input_map": {TEXT_INPUT: TEXT_INPUT},
             "output_map": {name: f"tokens_{name}" for name in feeds}},
            {"model_name": triton_model_name(model.name, variant_key),
             "input_map": {t.name: (f"tokens_{t.name}" if t.name in feeds else t.name) for t in model.inputs},
             "output_map": {t.name: t.name for t in model.outputs}},
        ])
