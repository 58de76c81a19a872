"""Stage 2: PyTorch module -> one fp32 ONNX file with a dynamic batch dim and named dynamic dims.

``torch.onnx.export(dynamo=True)`` first; the legacy TorchScript exporter is a logged fallback.
Weights are written inline (one ``model.onnx``) when under 2 GB, else beside it in
``model.onnx.data`` (Triton's onnxruntime backend loads that name from the version folder).
The result passes ``onnx.checker`` and shape inference.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from pathlib import Path
from typing import Callable


from generator.errors import UserError, reraise_if_interrupted
from generator.loading.inputs import Point, call_module, call_plan, make_inputs, pick_outputs
from generator.formats.onnxfile import onnx_io  # noqa: F401 (re-exported: the variants read graphs through export)
from generator.spec import ModelSpec

TWO_GB = 2 * 1024**3
EXTERNAL_DATA_NAME = "model.onnx.data"
DEFAULT_OPSET = 20


def example_point(model: ModelSpec) -> Point:
    """The shape traced at export: batch 2 (not 1, which tracers specialise) and dims at opt (>= 2)."""
    batch = 2 if model.max_batch_size > 0 else 0
    dims = {k: (opt if opt > 1 else min(2, hi)) for k, (lo, opt, hi) in model.dims.items()}
    return Point(batch, tuple(sorted(dims.items())))


def export_onnx(module, model: ModelSpec, out: Path, log: Callable[[str], None] = lambda s: None) -> dict:
    """Write ``out`` (model.onnx, maybe with model.onnx.data beside it). Returns export info."""
    import torch

    point = example_point(model)
    feeds = make_inputs(model, point, seed=1)
    args = tuple(torch.from_numpy(feeds[t.name]) for t in model.inputs)
    # inputs by name in, declared outputs out, in declared order
    module = script_adapter(module, model, args) if isinstance(module, torch.jit.ScriptModule) \
        else io_adapter(module, model)
    opset = model.opset or DEFAULT_OPSET
    errors = []
    with tempfile.TemporaryDirectory(prefix="tritongen-export-") as tmp:
        raw = Path(tmp) / "raw.onnx"
        exporter, branch = None, ""
        for name, fn in (("dynamo", _export_dynamo), ("legacy", _export_legacy)):
            try:
                branch = fn(module, model, args, raw, opset) or ""
                fixed = fixed_dims(raw, model)
                if fixed:  # dynamo specialised a dim the spec declares dynamic (draft export): a graph for one shape
                    raise SpecialisedExport(f"fixed {', '.join(fixed)} in the graph: forward() specialises on that "
                                            "dim (Python control flow or a literal taken from a tensor's shape)")
                exporter = name
                break
            except UserError:
                raise
            except Exception as e:
                reraise_if_interrupted(e)  # Ctrl-C inside torch.export comes back wrapped: not an exporter failure
                errors.append((name, e))
                log(f"{name} exporter failed: {_first_line(e)}")
                for p in Path(tmp).iterdir():
                    p.unlink() if p.is_file() else shutil.rmtree(p)
        if exporter is None:
            raise UserError(_export_error(model, errors))
        if exporter == "legacy":
            log(f"exported with the legacy exporter (dynamo failed: {_first_line(errors[0][1])})")
        named = Path(tmp) / "named.onnx"
        renamed = name_graph_io(raw, named, [t.name for t in model.inputs], [t.name for t in model.outputs],
                                model.where)
        if renamed:
            log(f"renamed {len(renamed)} graph value(s) that collided with declared names: "
                + ", ".join(f"{a} -> {b}" for a, b in renamed[:5]))
        info = finalize_onnx(named, out)
    written = info["opset"]
    if written != opset:  # the legacy exporter writes at most 18
        log(f"exported at opset {written}, not the {opset} asked ({exporter} exporter)")
    info.update(exporter=exporter, opset=written)
    if exporter == "legacy" and isinstance(errors[0][1], SpecialisedExport):
        info["specialised"] = (f"the dynamo exporter {errors[0][1]}; the legacy graph was traced at {point.label} "
                               "and may hold that shape: make forward() shape-generic")
    if branch:
        log(f"warning: {branch}")
        info["traced_branch"] = branch
    return info


def export_note(info: dict) -> str:
    """What an export left for a later gate failure to name as its likely cause ("" when nothing)."""
    return info.get("specialised") or info.get("traced_branch") or ""


class SpecialisedExport(Exception):
    """An exporter wrote a graph whose input dims are fixed where the spec declares them dynamic."""


def fixed_dims(path: Path, model: ModelSpec) -> list[str]:
    """The dims of the graph at ``path`` that are fixed numbers where the spec wants them to vary: the batch dim
    (max_batch_size > 0) and every named dim whose range is not one value. e.g. ["input 'x' dim 0 (batch) at 2"]."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    inits = {t.name for t in graph.initializer}
    real = [v for v in graph.input if v.name not in inits]
    off = 1 if model.max_batch_size > 0 else 0
    out = []
    for t, v in zip(model.inputs, real):
        dims = v.type.tensor_type.shape.dim if v.type.tensor_type.HasField("shape") else []
        wanted = {0: "batch"} if off else {}
        wanted.update({j + off: d for j, d in enumerate(t.shape)
                       if isinstance(d, str) and model.dims[d][0] != model.dims[d][2]})
        for axis, label in wanted.items():
            if axis < len(dims) and dims[axis].HasField("dim_value"):
                out.append(f"input '{t.name}' dim {axis} ({label}) at {dims[axis].dim_value}")
    return out


def dynamic_shapes(model: ModelSpec) -> tuple:
    """One ``{axis: Dim}`` per input (None for a static one). The batch Dim runs 1..max_batch_size: torch 2.13
    exports min=1 when the example batch is >= 2 (``example_point`` traces batch 2), and the verification points
    check batch 1 itself."""
    from torch.export import Dim

    dims = {}
    if model.max_batch_size > 0:
        dims["batch"] = Dim("batch", min=1, max=max(model.max_batch_size, 2))
    for name, (lo, _, hi) in model.dims.items():
        dims[name] = Dim(name, min=lo, max=max(hi, 2))
    shapes = []
    for t in model.inputs:
        off = 1 if model.max_batch_size > 0 else 0
        axes = {0: dims["batch"]} if off else {}
        for j, d in enumerate(t.shape):
            if isinstance(d, str):
                axes[j + off] = dims[d]
        shapes.append(axes or None)
    return tuple(shapes)


def _export_dynamo(module, model: ModelSpec, args, path: Path, opset: int) -> None:
    import torch
    shapes = list(dynamic_shapes(model))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=True,
            opset_version=opset,
            dynamic_shapes=tuple(shapes),
            external_data=True,
            verbose=False,
        )


def traced_branch(records) -> str:
    """From warnings caught while tracing (``warnings.catch_warnings(record=True)``): where the user's forward()
    turned a tensor into a Python bool (``if x.sum() > 0:``), so the traced graph keeps only the branch the example
    input took. "" when it never did. Library frames (torch, transformers) are left out: theirs are checks on
    shapes and arguments (``if padding_idx >= weight.size(0)``), the same for every input of the declared shapes.
    e.g. "forward() branches on a tensor's value at models.py:44 (`if x.sum() > 0:`) ..."."""
    import linecache

    import torch

    from generator.loading.inputs import is_user_file

    spots = []
    for r in records:
        if issubclass(r.category, torch.jit.TracerWarning) and "Python boolean" in str(r.message) \
                and is_user_file(r.filename):
            code = linecache.getline(r.filename, r.lineno).strip()
            spot = f"{Path(r.filename).name}:{r.lineno}" + (f" (`{code[:80]}`)" if code else "")
            if spot not in spots:
                spots.append(spot)
    if not spots:
        return ""
    more = f" and {len(spots) - 1} more" if len(spots) > 1 else ""
    return (f"forward() branches on a tensor's value at {spots[0]}{more}: the traced graph keeps the branch the "
            "example input took, and answers wrongly where an input takes another; write it with torch.where, or "
            "use the torchscript variant with options.method: script")


def _export_legacy(module, model: ModelSpec, args, path: Path, opset: int) -> str:
    """The legacy (TorchScript-tracing) export; returns ``traced_branch`` of what the trace warned about."""
    import torch
    import warnings

    axes = {}
    for t in (*model.inputs, *model.outputs):
        a = {}
        off = 0
        if model.max_batch_size > 0:
            a[0] = "batch"
            off = 1
        for j, d in enumerate(t.shape):
            if isinstance(d, str):
                a[j + off] = d
            elif d == -1:  # follows no input: its own symbolic dim
                a[j + off] = f"{t.name}_dim{j}"
        if a:
            axes[t.name] = a
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        torch.onnx.export(
            module,
            args,
            str(path),
            dynamo=False,
            opset_version=min(opset, 18),
            input_names=[t.name for t in model.inputs],
            output_names=[t.name for t in model.outputs],
            dynamic_axes=axes,
            do_constant_folding=True,
        )
    return traced_branch(records)


def _param_names(model: ModelSpec) -> list[str]:
    """Python parameter names for the adapter's forward: the declared names where they are identifiers
    (TorchScript keeps them; Triton's libtorch backend matches inputs by forward()'s names), else input_<i>."""
    import keyword

    out, seen = [], set()
    for i, t in enumerate(model.inputs):
        n = t.name if t.name.isidentifier() and not keyword.iskeyword(t.name) and t.name != "self" else f"input_{i}"
        while n in seen:
            n = f"{n}_{i}"
        seen.add(n)
        out.append(n)
    return out


def io_adapter(module, model: ModelSpec):
    """``module`` behind a forward that takes the declared inputs by position (in declared order), passes
    them to ``module`` by name (``inputs.call_plan``) and returns the declared outputs as a tuple in declared
    order, picked by key from dicts / ``ModelOutput`` (``inputs.pick_outputs``). Exporters and tracers see
    only this: graph inputs and outputs are exactly the spec's, in its order."""
    import torch

    plan = call_plan(module, model)
    params = _param_names(model)
    ns: dict = {}
    exec(f"def forward(self, {', '.join(params)}):\n    return self._io({', '.join(params)})\n", ns)

    class TritongenIO(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.inner = module

        def _io(self, *args):
            outs = tuple(pick_outputs(call_module(self.inner, model, plan, list(args)), model))
            return outs[0] if len(outs) == 1 else outs

    TritongenIO.forward = ns["forward"]
    adapter = TritongenIO()
    adapter.training = False  # not .eval(): an ExportedProgram's module refuses train()/eval()
    return adapter


def output_paths(out, model: ModelSpec) -> list[tuple]:
    """Where each declared output sits in ``out`` (what forward() returned): a tuple of keys / indices."""
    import torch

    where: dict[int, tuple] = {}

    def walk(o, path):
        if isinstance(o, torch.Tensor):
            where.setdefault(id(o), path)
        elif isinstance(o, dict) or hasattr(o, "to_tuple"):
            for k, v in o.items():
                walk(v, path + (k,))
        elif isinstance(o, (list, tuple)):
            for i, v in enumerate(o):
                walk(v, path + (i,))

    walk(out, ())
    return [where[id(t)] for t in pick_outputs(out, model)]


_SCRIPT_SOURCES = 0


def script_adapter(module, model: ModelSpec, example: tuple):
    """For a TorchScript source: the adapter of ``io_adapter`` written as TorchScript (tracers cannot call
    a ScriptModule from Python code), generated from the names and the output structure seen on ``example``."""
    import linecache

    import torch

    global _SCRIPT_SOURCES
    plan = call_plan(module, model)
    with torch.no_grad():
        paths = output_paths(call_module(module, model, plan, list(example)), model)
    params = _param_names(model)
    call = ", ".join(f"{t.name}={p}" if plan.by_name else p for t, p in zip(model.inputs, params))
    picks = ["out" + "".join(f"[{k!r}]" for k in path) for path in paths]
    ret = picks[0] if len(picks) == 1 else "(" + ", ".join(picks) + ",)"
    _SCRIPT_SOURCES += 1
    filename = f"<tritongen-io-{_SCRIPT_SOURCES}>"
    src = (
        "import torch\n"
        "class TritongenIO(torch.nn.Module):\n"
        "    def __init__(self, inner):\n"
        "        super().__init__()\n"
        "        self.inner = inner\n\n"
        f"    def forward(self, {', '.join(f'{p}: torch.Tensor' for p in params)}):\n"
        f"        out = self.inner({call})\n"
        f"        return {ret}\n"
    )
    linecache.cache[filename] = (len(src), None, src.splitlines(True), filename)
    ns: dict = {"__name__": f"tritongen_io_{_SCRIPT_SOURCES}"}
    exec(compile(src, filename, "exec"), ns)
    adapter = ns["TritongenIO"](module)
    adapter.training = False
    return torch.jit.script(adapter)


def name_graph_io(path: Path, dst: Path, inputs: list[str], outputs: list[str],
                  where: str = "model") -> list[tuple[str, str]]:
    """Write the ONNX graph at ``path`` to ``dst`` with exactly the declared input and output names.

    Values inside the graph (or its subgraphs) that carry a declared name are renamed first (``<name>__<k>``),
    so a model whose submodule is called ``embedding`` can still have an output ``embedding`` (ONNX requires
    single static assignment). An output that is a graph input, an initializer or an earlier output gets an
    Identity node. Returns [(old, new)] for the internal values renamed.
    """
    import onnx_ir as ir

    model = ir.load(str(path))
    g = model.graph
    real_inputs = [v for v in g.inputs if not v.is_initializer()]
    if len(real_inputs) != len(inputs):
        raise UserError(
            f"{where}.inputs: the exported graph has {len(real_inputs)} input(s) but the spec declares {len(inputs)}; "
            "an input the model never uses is dropped by the exporter: remove it from the spec")
    if len(g.outputs) != len(outputs):
        raise AssertionError(f"exported graph has {len(g.outputs)} outputs, expected {len(outputs)} (a bug)")
    declared = set(inputs) | set(outputs)
    keep = {id(v) for v in real_inputs} | {id(v) for v in g.outputs}
    values = []
    for v in g.inputs:
        values.append(v)
    values += list(g.initializers.values())
    for node in ir.traversal.RecursiveGraphIterator(g):
        values += list(node.outputs)
    io_values = {id(v): v for v in (*real_inputs, *g.outputs)}.values()
    for k, v in enumerate(io_values):  # free every declared name first: an output may carry another's
        v.name = f"__tritongen_io_{k}"
    taken = {v.name for v in values if v.name}
    renamed = []
    for v in values:
        if v.name in declared and id(v) not in keep:
            k, new = 1, f"{v.name}__{1}"
            while new in taken or new in declared:
                k += 1
                new = f"{v.name}__{k}"
            renamed.append((v.name, new))
            taken.add(new)
            v.name = new
    for v, name in zip(real_inputs, inputs):
        v.name = name
    seen = set()
    for i, (v, name) in enumerate(zip(list(g.outputs), outputs)):
        if v.producer() is None or v.is_graph_input() or v.is_initializer() or id(v) in seen:
            new = ir.Value(name=name, type=v.type, shape=v.shape)
            g.append(ir.Node("", "Identity", [v], outputs=[new]))
            g.outputs[i] = new
            seen.add(id(new))
        else:
            seen.add(id(v))
    for v, name in zip(list(g.outputs), outputs):
        if v.name != name:
            if any(o is not v and o.name == name for o in g.outputs):
                raise AssertionError(f"output name {name} still taken (a bug)")
            v.name = name
    ir.save(model, str(dst), external_data=dst.name + ".data")
    return renamed


def finalize_onnx(src: Path, out: Path) -> dict:
    """Load (with external data), check, infer shapes, save as one file (or with .data when >= 2 GB)."""
    import onnx

    proto = onnx.load(str(src), load_external_data=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    size = proto.ByteSize()
    external = size >= TWO_GB
    skipped = None
    try:
        proto = onnx.shape_inference.infer_shapes(proto, strict_mode=False) if not external else proto
    except Exception as e:  # shapes are an annotation only: the graph is saved without them, and the reason kept
        skipped = f"shape inference skipped: {type(e).__name__}: {_first_line(e)}"
    save_onnx(proto, out, size)
    onnx.checker.check_model(str(out), full_check=not external)
    info = {"nodes": len(proto.graph.node), "bytes": size, "external_data": external,
            "opset": next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)}
    return {**info, "shape_inference": skipped} if skipped else info


def data_file(path: Path) -> Path:
    """Where ``save_onnx`` puts the weights of a model over 2 GB: ``<name>.data`` beside it
    (``model.onnx.data`` for the artifact, the name Triton's onnxruntime backend loads)."""
    return path.with_name(path.name + ".data")


def save_onnx(proto, path: Path, size: int | None = None) -> bool:
    """Save ``proto`` (weights loaded) to ``path``: inline under 2 GB, else with its weights in
    ``data_file(path)``. Returns whether the weights went to the data file."""
    import onnx

    size = proto.ByteSize() if size is None else size
    data_file(path).unlink(missing_ok=True)
    if size >= TWO_GB:
        onnx.save_model(proto, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                        location=data_file(path).name, size_threshold=1024)
        data_file(path).chmod(0o644)  # onnx writes it 0600: a server running as another user must read it
        return True
    onnx.save_model(proto, str(path))
    return False


def has_external_data(path: Path) -> bool:
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    return any(t.data_location == onnx.TensorProto.EXTERNAL for t in proto.graph.initializer)


def copy_onnx(src: Path, dst: Path) -> None:
    """Copy an ONNX model with its external data (re-saved beside ``dst`` under its own name)."""
    import onnx

    if not has_external_data(src):
        shutil.copy(src, dst)
        return
    save_onnx(onnx.load(str(src), load_external_data=True), dst)


def _first_line(e: BaseException) -> str:
    s = str(e).strip()
    return (s.splitlines()[0] if s else type(e).__name__)[:300]


_OP_PATTERNS = [
    r"No ONNX function found for <OpOverload\(op='([\w.]+)'",
    r"unrecognized namespace ([\w:.]+)",
    r"Exporting the operator ['`]?([\w:.]+)['`]? to ONNX opset version \d+ is not supported",
    r"call_function\[target=torch\.ops\.([\w.]+?)(?:\.default)?\]",
    r"(?:operator|op) ['`]([\w]+::[\w.]+)['`]",
]


def unsupported_op(errors) -> str | None:
    text = "\n".join(f"{e!s}\n{e.__cause__!s}" for _, e in errors)
    for pat in _OP_PATTERNS:
        m = re.search(pat, text)
        if m:
            return m.group(1)
    return None


def _export_error(model: ModelSpec, errors) -> str:
    op = unsupported_op(errors)
    if op:
        return (
            f"{model.where}: ONNX export failed: operator '{op}' is not supported by the ONNX exporters "
            f"(opset {model.opset or DEFAULT_OPSET}); replace it in the model, register a custom ONNX translation, "
            "or try another opset"
        )
    first = errors[0][1]
    if isinstance(first, SpecialisedExport):
        legacy = f"; legacy: {_first_line(errors[1][1])}" if len(errors) > 1 else ""
        return (f"{model.where}: ONNX export failed: dynamo: {first}{legacy}; make forward() shape-generic (no Python "
                "branch or literal on a dynamic dim), or declare the dim fixed (a number in the shape, or "
                "max_batch_size: 0 for the batch)")
    return f"{model.where}: ONNX export failed (dynamo: {_first_line(first)})"

