"""``tritongen init CHECKPOINT``: write a starting spec from what the checkpoint itself says.

- a Hugging Face folder (config.json): everything inferred (task, inputs, outputs, dims, ranges) plus text or
  image preprocessing and an ensemble when the folder has a tokenizer / an image processor config;
- a ``torch.export`` file (``.pt2``): inputs and outputs from the program's placeholders and outputs, a
  symbolic first dim as the batch dim and other symbolic dims as named dims with the program's bounds;
- a TorchScript file: input names from ``forward``'s schema; shapes by a probe run, else TODOs;
- a state_dict (+ ``--factory module:callable``): the factory builds the model, inputs are named as forward()
  names them, the first layer suggests the input (an Embedding: int64 token ids of a named length ``seq``, the
  vocabulary as range; a conv: its channels; a linear: its features), a probe forward gives the outputs (named by
  a returned dict's keys); what stays unknown is a ``TODO`` the build names.

Nothing is written on error; the spec lands whole (temp file + rename) and is parsed back before it does.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from .errors import UserError

STATE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors")


def _flow(v) -> str:
    return json.dumps(v, ensure_ascii=False)


def _name(path: Path) -> str:
    stem = path.name if path.is_dir() else path.stem
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", stem).strip("_-") or "model"
    return re.sub(r"_{2,}", "_", name)


def _rel(path: Path, spec_dir: Path) -> str:
    """Relative to the spec when the checkpoint sits beside or below it, else absolute."""
    rel = os.path.relpath(path.resolve(), spec_dir.resolve())
    return str(path.resolve()) if rel.startswith("..") else rel


def _tensor_lines(key: str, tensors: list[dict], indent: str = "    ") -> list[str]:
    lines = [f"{indent}{key}:"]
    for t in tensors:
        todo, note = t.pop("_todo", None), t.pop("_note", None)
        lines.append(f"{indent}  - {_flow(t)}" + (f"   # TODO: {todo}" if todo else f"   # {note}" if note else ""))
    return lines


def init_spec(checkpoint: str | Path, output: Path, factory: str | None = None, name: str | None = None,
              task: str | None = None, force: bool = False, image: dict | None = None) -> str:
    """Write ``output`` (a spec for one model) and return its text.

    ``image``: ``{size: [h, w], mean: [...], std: [...]}`` for an image model given as a state_dict: the input
    is (channels, h, w) and the spec gets CPU image preprocessing + an ensemble (image bytes in)."""
    output = Path(output)
    if output.exists() and not force:
        raise UserError(f"-o {output}: already exists; choose another file or pass --force")
    if output.suffix not in (".yaml", ".yml"):
        raise UserError(f"-o {output}: a spec file ends in .yaml")
    spec_dir = output.resolve().parent
    if not spec_dir.is_dir():
        raise UserError(f"-o {output}: folder '{spec_dir}' does not exist; create it or write the spec elsewhere")
    ckpt = Path(checkpoint).expanduser()
    if not ckpt.exists():
        from generator.loading.hf import HUB_ID_RE

        if HUB_ID_RE.match(str(checkpoint)) and not str(checkpoint).startswith((".", "/")):
            raise UserError(f"{checkpoint}: looks like a Hugging Face Hub id, and tritongen never downloads; fetch it "
                            f"yourself (e.g. `hf download {checkpoint} --local-dir DIR`) and give that folder")
        raise UserError(f"{checkpoint}: no such file or folder; give a Hugging Face folder, a TorchScript or "
                        "torch.export file, or a state_dict with --factory")
    name = name or _name(ckpt)
    if image is not None and not (factory and not ckpt.is_dir()):
        raise UserError("--image-size: only for a state_dict with --factory (Hugging Face folders say it themselves)")
    if ckpt.is_dir():
        body = _from_hf(ckpt, spec_dir, name, task)
    elif task:
        raise UserError("--task: only for Hugging Face folders")
    elif factory:
        body = _from_state_dict(ckpt, spec_dir, name, factory, image)
    elif ckpt.suffix == ".pt2":
        body = _from_exported(ckpt, spec_dir, name)
    else:
        body = _from_torchscript_or_hint(ckpt, spec_dir, name)
    text = ("# Written by `tritongen init`; edit freely. Every key: `tritongen schema` / README \"The spec\".\n"
            "# Editor completion: `tritongen schema -o tritongen-spec.schema.json`, then this modeline finds it:\n"
            "# yaml-language-server: $schema=tritongen-spec.schema.json\n"
            "models:\n" + "\n".join(body) + "\n")
    if "TODO" not in text:  # a spec with TODOs is for the user to finish; the rest must parse as written
        _check_parses(text, output)
    tmp = output.with_name(f".{output.name}.tmp")
    tmp.write_text(text)
    tmp.rename(output)
    return text


def _check_parses(text: str, output: Path) -> None:
    import yaml

    from .spec import parse_spec

    parse_spec(yaml.safe_load(text), output.resolve())


# ------------------------------------------------------------------------------------- Hugging Face


def _from_hf(folder: Path, spec_dir: Path, name: str, task: str | None) -> list[str]:
    from generator.loading import hf

    cfg = hf.read_config(folder, str(folder))
    trust = False
    try:
        hf.weight_files(folder, str(folder), False)
    except UserError:
        hf.weight_files(folder, str(folder), True)  # pickles only: the error above is re-raised without them
        trust = True
    task = task or hf.guess_task(cfg, folder)
    if task not in hf.TASKS:
        raise UserError(f"--task: '{task}' is not one of {', '.join(hf.TASKS)}")
    info = hf.read_source({"huggingface": str(folder.resolve()), "task": task}, "source", spec_dir)
    io = hf.infer_io(cfg, folder, task, info.pooling)
    src = {"huggingface": _rel(folder, spec_dir), "task": task}
    if task == "feature-extraction":
        src.update(pooling=info.pooling, normalize=info.normalize)
    if trust:
        src["trust"] = True
    lines = [f"  - name: {name}",
             f"    source: {_flow(src)}" + ("   # TODO: pickled weights: trust only a folder you made" if trust else "")]
    has_tokenizer = any((folder / f).is_file() for f in ("tokenizer.json", "vocab.txt", "vocab.json",
                                                          "tokenizer.model", "spiece.model"))
    text = task in ("feature-extraction", "sequence-classification", "token-classification") and has_tokenizer
    if text:
        limit = hf.max_positions(cfg) or 512
        st = folder / "sentence_bert_config.json"
        if st.is_file():
            limit = min(limit, int(json.loads(st.read_text()).get("max_seq_length", limit)))
        if "seq" in io["dims"]:  # the tokenizer never sends more than max_length tokens
            lo, opt, _ = io["dims"]["seq"]
            io["dims"]["seq"] = [lo, min(opt, limit), limit]
    for o in io["outputs"]:  # the build reads them from config.json's id2label itself
        if o.pop("labels", None):
            o["_note"] = "labels: from config.json id2label (labels: [...] or a file overrides)"
    lines += _tensor_lines("inputs", io["inputs"]) + _tensor_lines("outputs", io["outputs"])
    if io["dims"]:
        lines.append(f"    dims: {_flow(io['dims'])}")
    lines.append(f"    max_batch_size: {io['max_batch_size']}")
    lines.append("    variants: [onnx]")
    gate = {"image-classification": "classification", "sequence-classification": "classification",
            "feature-extraction": "embedding"}.get(task)
    if gate and not (task == "feature-extraction" and info.pooling == "none"):
        lines.append(f"    verify: {_flow({'task': gate, 'samples': 8})}")
    if text:
        lines.append(f"    preprocess: {_flow({'text': {'max_length': limit}})}   # strings -> tokenizer -> model")
    if task == "image-classification":
        c, h, w, pre = hf.image_geometry(cfg, folder)
        image = {"size": [h, w]}
        if isinstance(pre.get("image_mean"), list) and len(pre["image_mean"]) == 3:
            image["mean"] = [float(x) for x in pre["image_mean"]]
        if isinstance(pre.get("image_std"), list) and len(pre["image_std"]) == 3:
            image["std"] = [float(x) for x in pre["image_std"]]
        if c == 3:
            lines.append(f"    preprocess: {_flow({'image': image})}   # image bytes -> pixel_values -> model")
    return lines


# ---------------------------------------------------------------------------------------- torch files


def _load_torchscript(path: Path):
    import torch

    try:
        return torch.jit.load(str(path), map_location="cpu")
    except Exception:
        return None


def _from_torchscript_or_hint(path: Path, spec_dir: Path, name: str) -> list[str]:
    mod = _load_torchscript(path)
    if mod is None:
        if path.suffix in STATE_SUFFIXES:
            raise UserError(f"{path.name}: not TorchScript; if it holds a state_dict, pass --factory module:callable "
                            "(the function that builds the model)")
        raise UserError(f"{path.name}: not a TorchScript, torch.export (.pt2) or state_dict file")
    mod.eval()
    args = [a for a in mod.forward.schema.arguments if a.name != "self"]
    inputs, outputs, mbs = _probe(mod, [a.name for a in args])
    lines = [f"  - name: {name}", f"    source: {_flow({'torchscript': _rel(path, spec_dir)})}"]
    lines += _tensor_lines("inputs", inputs) + _tensor_lines("outputs", outputs)
    lines += [f"    max_batch_size: {mbs}", "    variants: [onnx, torchscript]"]
    return lines


_GUESSES = [(3, 224, 224), (3, 32, 32), (1, 28, 28)]


SEQ_DIMS = [1, 16, 512]  # init's guess for a token input's lengths: [min, opt, max]


def _forward_names(module) -> list[str]:
    """forward()'s parameters without a default (the inputs a caller must give), in order; [] when unknown."""
    import inspect

    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError):
        return []
    return [q.name for q in params if q.default is inspect.Parameter.empty
            and q.kind in (q.POSITIONAL_ONLY, q.POSITIONAL_OR_KEYWORD)]


def _first_layer(module):
    """The first leaf module with weights, in definition order (an Embedding means token ids come in)."""
    for _, m in module.named_modules():
        if not any(True for _ in m.children()) and any(True for _ in m.parameters(recurse=False)):
            return m
    return None


def _outputs_of(out) -> list[tuple[str, object]] | None:
    """(name, tensor) per returned tensor: a dict's (or ModelOutput's) keys, else output / output_<i>."""
    import torch

    if isinstance(out, dict) or hasattr(out, "to_tuple"):
        items = [(str(k), v) for k, v in dict(out).items() if isinstance(v, torch.Tensor)]
    else:
        outs = out if isinstance(out, (tuple, list)) else [out]
        items = [("output" if len(outs) == 1 else f"output_{i}", o) for i, o in enumerate(outs)]
    if not items or not all(isinstance(o, torch.Tensor) and o.ndim >= 1 and o.shape[0] == 2 for _, o in items):
        return None
    return items


def _probe_tokens(module, name: str, vocab: int):
    """A token-id model (its first layer an Embedding): int64 ids of a named length ``seq``."""
    import torch

    try:
        with torch.inference_mode():
            items = _outputs_of(module(torch.zeros((2, SEQ_DIMS[1]), dtype=torch.int64)))
    except Exception:
        return None
    if items is None:
        return None
    inputs = [{"name": name, "dtype": "int64", "shape": ["seq"], "range": [0, vocab],
               "_todo": "token ids of length seq (dims), found by a probe run: check it"}]
    outputs = [{"name": k, **({"key": k} if not re.match(r"^[A-Za-z_][\w.-]*$", k) else {}),
                "dtype": str(o.dtype).replace("torch.", ""),
                "shape": ["seq" if d == SEQ_DIMS[1] else d for d in o.shape[1:]]} for k, o in items]
    return inputs, outputs, 8


def _probe(module, names: list[str], first_weight=None, image_size=None):
    """Inputs/outputs by running ``module`` on guessed shapes (one float input, or token ids when the first layer
    is an Embedding); TODOs when nothing fits. ``image_size`` (h, w): the input is (channels, h, w), channels from
    the first conv (else 3)."""
    import torch

    first = _first_layer(module) if isinstance(module, torch.nn.Module) else None
    if image_size is None and len(names) == 1 and isinstance(first, torch.nn.Embedding):
        got = _probe_tokens(module, names[0], first.num_embeddings)
        if got is not None:
            return got
    guesses = list(_GUESSES)
    if image_size is not None:
        ch = first_weight.shape[1] if first_weight is not None and len(first_weight.shape) == 4 else 3
        guesses = [(int(ch), *image_size)]
    elif first_weight is not None:
        shape = tuple(first_weight.shape)
        if len(shape) == 4:  # a conv: channels known, spatial size guessed
            guesses = [(shape[1], 224, 224), (shape[1], 64, 64), (shape[1], 32, 32)]
        elif len(shape) == 2:  # a linear layer: features known
            guesses = [(shape[1],)]
    if image_size is not None and len(names) == 1:
        g = guesses[0]
        try:
            with torch.inference_mode():
                module(torch.zeros((2, *g)))
        except Exception as e:
            first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
            raise UserError(f"--image-size {image_size[0]}x{image_size[1]}: the model rejects a batch of "
                            f"{list(g)} images ({type(e).__name__}: {first}); give the size it was trained on")
    if len(names) == 1:
        for g in guesses:
            try:
                with torch.inference_mode():
                    items = _outputs_of(module(torch.zeros((2, *g))))
            except Exception:
                continue
            if items is None:
                continue
            inputs = [{"name": names[0], "dtype": "float32", "shape": list(g),
                       "_todo": None if image_size is not None else "shape found by a probe run: check it"}]
            if image_size is not None and g[0] in (1, 3):  # (channels, h, w): what Triton's image clients read
                inputs[0]["format"] = "FORMAT_NCHW"
            outputs = [{"name": k, "dtype": str(o.dtype).replace("torch.", ""), "shape": list(o.shape[1:])}
                       for k, o in items]
            return inputs, outputs, 8
    inputs = [{"name": n, "dtype": "float32", "shape": ["TODO"], "_todo": "the shape without the batch dim"}
              for n in names]
    outputs = [{"name": "output", "dtype": "float32", "shape": ["TODO"],
                "_todo": "one entry per returned tensor, in order"}]
    return inputs, outputs, 8


def _from_exported(path: Path, spec_dir: Path, name: str) -> list[str]:
    import torch

    try:
        ep = torch.export.load(str(path))
    except Exception as e:
        raise UserError(f"{path.name}: not a torch.export file ({(str(e).splitlines() or [''])[0][:150]})")
    user_inputs = list(ep.graph_signature.user_inputs)
    nodes = {n.name: n for n in ep.graph.nodes if n.op == "placeholder"}
    out_node = next(n for n in ep.graph.nodes if n.op == "output")
    out_vals = [a.meta.get("val") for a in out_node.args[0] if hasattr(a, "meta")]
    bounds = {str(k): (v.lower, v.upper) for k, v in ep.range_constraints.items()}
    metas = [nodes[n].meta.get("val") for n in user_inputs]
    sym = lambda d: not isinstance(d, int)  # noqa: E731
    batched = all(m is not None and m.ndim > 0 and sym(m.shape[0]) for m in metas)
    dims: dict = {}
    mbs = 0
    if batched:
        lo_hi = bounds.get(str(metas[0].shape[0]), (1, 8))
        hi = lo_hi[1]
        mbs = int(hi) if isinstance(hi, int) or (hasattr(hi, "is_finite") and hi.is_finite) else 8
        mbs = min(mbs, 64)

    def shape_of(val, named: bool) -> list:
        out = []
        for d in list(val.shape)[1 if batched else 0:]:
            if sym(d):
                key = str(d)
                dname = dims.get(key, "TODO") if not named else dims.setdefault(key, f"dim{len(dims)}")
                if named:
                    lo, hi = bounds.get(key, (1, 512))
                    hi = int(hi) if str(hi) not in ("oo", "int_oo", "inf") else 512
                    dims_v[dname] = [max(int(lo), 1), max(int(lo), 1), hi]
                out.append(dname)
            else:
                out.append(int(d))
        return out

    dims_v: dict = {}
    inputs = [{"name": re.sub(r"[^A-Za-z0-9_]", "_", n), "dtype": str(m.dtype).replace("torch.", ""),
               "shape": shape_of(m, True)} for n, m in zip(user_inputs, metas)]
    outputs = []
    for i, v in enumerate(out_vals):
        s = shape_of(v, False)
        outputs.append({"name": "output" if len(out_vals) == 1 else f"output_{i}",
                        "dtype": str(v.dtype).replace("torch.", ""),
                        "shape": s})
    lines = [f"  - name: {name}", f"    source: {_flow({'exported_program': _rel(path, spec_dir)})}"]
    lines += _tensor_lines("inputs", inputs) + _tensor_lines("outputs", outputs)
    if dims_v:
        lines.append(f"    dims: {_flow(dims_v)}   # [min, opt, max] from the program's bounds: set opt")
    lines += [f"    max_batch_size: {mbs}", "    variants: [onnx]"]
    return lines


def _from_state_dict(path: Path, spec_dir: Path, name: str, factory: str, image: dict | None = None) -> list[str]:
    from generator.loading.source import _from_factory, apply_state_dict, load_state_dict
    from .spec import Source

    if path.suffix not in STATE_SUFFIXES:
        raise UserError(f"{path.name}: a state_dict file ends in {', '.join(STATE_SUFFIXES)}")
    if not re.match(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$", factory):
        raise UserError(f"--factory {factory}: expected 'module:callable' (e.g. examples.vit:vit_b16)")
    src = Source(kind="factory", factory=factory, checkpoint=path.resolve())
    state = load_state_dict(src, "source")
    key = None
    if not any(hasattr(v, "shape") for v in state.values()):
        key = next((k for k, v in state.items() if isinstance(v, dict)), None)
        if key:
            state = state[key]
    module = _from_factory(src, "--factory", spec_dir)  # importable from the spec's folder, as at build time
    apply_state_dict(module, state, "source")
    module.eval()
    first = next((v for k, v in state.items() if k.endswith("weight") and getattr(v, "ndim", 0) >= 2), None)
    names = _forward_names(module) or ["input"]
    if image and len(names) == 1:
        names = ["pixel_values"]
    inputs, outputs, mbs = _probe(module, names, first, tuple(image["size"]) if image else None)
    source = {"factory": factory, "checkpoint": _rel(path, spec_dir)}
    if key:
        source["state_dict_key"] = key
    lines = [f"  - name: {name}",
             f"    source: {_flow(source)}   # the factory must be importable from this spec's folder"]
    if image and len(outputs) == 1:
        outputs[0]["name"] = "logits"
    lines += _tensor_lines("inputs", inputs) + _tensor_lines("outputs", outputs)
    if any("seq" in t["shape"] for t in inputs):
        lines.append(f"    dims: {_flow({'seq': SEQ_DIMS})}   # TODO: the sequence lengths you serve: [min, opt, max]")
    lines += [f"    max_batch_size: {mbs}", "    variants: [onnx]"]
    channels = inputs[0]["shape"][0] if image and inputs[0]["shape"] != ["TODO"] else None
    if channels in (1, 3):
        todo = ""
        if channels == 1:  # grayscale: one mean/std value (images converted to L); ImageNet's are RGB
            given = {k: image[k] for k in ("mean", "std") if k in image and len(image[k]) == 1}
            todo = "" if len(given) == 2 else "   # TODO: your training's mean/std (one value each: grayscale)"
            image = {**image, "mean": given.get("mean", [0.5]), "std": given.get("std", [0.5])}
        if len(outputs) == 1 and len(outputs[0]["shape"]) == 1:
            lines.append(f"    verify: {_flow({'task': 'classification', 'samples': 8})}")
        lines.append(f"    preprocess: {_flow({'image': image})}" + (todo or "   # image bytes -> pixel_values -> model"))
    return lines
