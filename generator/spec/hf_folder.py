"""A local Hugging Face folder read as spec data: ``config.json`` (and sentence-transformers' pooling files) give
what a spec leaves out (inputs, outputs, dims, integer ranges, max_batch_size). JSON only: no transformers, no
tokenizer (those load in ``generator/loading/hf.py`` when the model is built)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from generator.formats.classes import hf_labels
from ..errors import UserError

TASKS = (
    "feature-extraction", "sequence-classification", "token-classification", "image-classification",
    "causal-lm", "audio-encoder",
)
POOLINGS = ("mean", "cls", "none")
PADDINGS = ("longest", "max_length")
WEIGHTS_SAFE = ("model.safetensors", "model.safetensors.index.json")
WEIGHTS_PICKLE = ("pytorch_model.bin", "pytorch_model.bin.index.json")
HUB_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_ROBERTA_LIKE = ("roberta", "xlm-roberta", "camembert", "longformer", "bart", "mbart")


# ------------------------------------------------------------------------------------------- the folder


def resolve_folder(value: Any, where: str, root: Path, what: str = "a Hugging Face model folder") -> Path:
    """The folder ``value`` names (relative to the spec), or a one-line error (hub ids included)."""
    if not isinstance(value, str) or not value:
        raise UserError(f"{where}: expected the path of {what}, got {value!r}")
    p = (root / value).expanduser().resolve()
    if p.is_dir():
        return p
    # 'org/name' is a hub id unless 'org' is a folder here (checkpoints/all-MiniLM-L6-v2 not yet made)
    if HUB_ID_RE.match(value) and not value.startswith((".", "/")) and not (root / value.split("/")[0]).is_dir():
        raise UserError(
            f"{where}: '{value}' looks like a Hugging Face Hub id, and tritongen never downloads; fetch it yourself "
            f"(e.g. `hf download {value} --local-dir models/{value.split('/')[-1]}`) and give that folder"
        )
    raise UserError(f"{where}: folder '{value}' not found (paths are relative to the spec file's folder)")


def read_config(folder: Path, where: str) -> dict:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise UserError(f"{where}: '{folder}' is not a Hugging Face model folder (no config.json); "
                        "give the folder save_pretrained() wrote")
    try:
        data = json.loads(cfg.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{where}: {cfg} is not valid JSON ({e}); fix or re-save the model")
    if not isinstance(data, dict) or "model_type" not in data:
        raise UserError(f"{where}: {cfg} has no model_type; is it a Hugging Face model's config.json?")
    return data


def weight_files(folder: Path, where: str, trust: bool) -> list[Path]:
    """The files the weights load from (safetensors, or pickles when ``trust: true``)."""
    for name in WEIGHTS_SAFE:
        p = folder / name
        if p.is_file():
            if name.endswith(".index.json"):
                shards = sorted(set(json.loads(p.read_text()).get("weight_map", {}).values()))
                return [p] + [folder / s for s in shards]
            return [p]
    for name in WEIGHTS_PICKLE:
        p = folder / name
        if p.is_file():
            if not trust:
                raise UserError(
                    f"{where}: '{folder.name}' has only pickled weights ({name}), which run arbitrary code when "
                    "loaded; convert them to model.safetensors, or set source.trust: true for a folder you trust"
                )
            if name.endswith(".index.json"):
                shards = sorted(set(json.loads(p.read_text()).get("weight_map", {}).values()))
                return [p] + [folder / s for s in shards]
            return [p]
    raise UserError(f"{where}: '{folder}' has config.json but no weights (model.safetensors); "
                    "give the folder save_pretrained() wrote")


def source_files(folder: Path, trust: bool) -> list[Path]:
    """What the artifacts depend on (hashed by the pipeline): config.json + weights."""
    files = [folder / "config.json"]
    try:
        files += weight_files(folder, "source.huggingface", trust)
    except UserError:
        pass  # reported with its field path when the model loads
    # (the pooling the folder implies is written into the model's source by fill_model, so it is hashed too)
    return files


def guess_task(cfg: dict, folder: Path) -> str:
    """The task a folder's architecture implies (used by ``tritongen init``)."""
    arch = " ".join(cfg.get("architectures") or [])
    if "ForSequenceClassification" in arch:
        return "sequence-classification"
    if "ForTokenClassification" in arch:
        return "token-classification"
    if "ForImageClassification" in arch:
        return "image-classification"
    if "ForCausalLM" in arch or "LMHeadModel" in arch:
        return "causal-lm"
    if cfg.get("model_type") in ("wav2vec2", "hubert", "wavlm", "data2vec-audio"):
        return "audio-encoder"
    return "feature-extraction"


def sentence_transformers_pooling(folder: Path) -> tuple[str, bool] | None:
    """(pooling, normalize) from a sentence-transformers folder, else None."""
    modules = folder / "modules.json"
    if not modules.is_file():
        return None
    try:
        mods = json.loads(modules.read_text())
    except ValueError:
        return None
    types = [m.get("type", "") for m in mods if isinstance(m, dict)]
    pooling = "mean"
    for m in mods:
        if isinstance(m, dict) and m.get("type", "").endswith("Pooling"):
            pc = folder / m.get("path", "1_Pooling") / "config.json"
            if pc.is_file():
                c = json.loads(pc.read_text())
                pooling = "cls" if c.get("pooling_mode_cls_token") else "mean"
    return pooling, any(t.endswith("Normalize") for t in types)


# ----------------------------------------------------------------------------------- what gets inferred


def _hidden(cfg: dict) -> int:
    for k in ("hidden_size", "d_model", "n_embd", "dim"):
        if isinstance(cfg.get(k), int):
            return cfg[k]
    hs = cfg.get("hidden_sizes")
    if isinstance(hs, list) and hs:
        return hs[-1]
    raise UserError("config.json has no hidden_size; declare outputs in the spec")


def max_positions(cfg: dict) -> int | None:
    for k in ("max_position_embeddings", "n_positions", "max_seq_len", "seq_length"):
        v = cfg.get(k)
        if isinstance(v, int) and v > 0:
            if k == "max_position_embeddings" and cfg.get("model_type") in _ROBERTA_LIKE:
                v -= (cfg.get("pad_token_id") or 1) + 1  # position ids start after the padding index
            return v
    return None


def num_labels(cfg: dict) -> int:
    if isinstance(cfg.get("id2label"), dict) and cfg["id2label"]:
        return len(cfg["id2label"])
    return int(cfg.get("num_labels", 2))


def image_geometry(cfg: dict, folder: Path) -> tuple[int, int, int, dict]:
    """(channels, height, width, preprocessor config) of an image model."""
    pre = {}
    p = folder / "preprocessor_config.json"
    if p.is_file():
        try:
            pre = json.loads(p.read_text())
        except ValueError:
            pre = {}
    size = cfg.get("image_size")
    if isinstance(size, (list, tuple)):
        h, w = int(size[0]), int(size[-1])
    elif isinstance(size, int):
        h = w = size
    else:
        s = pre.get("crop_size") or pre.get("size") or 224
        if isinstance(s, dict):
            h = int(s.get("height") or s.get("shortest_edge") or 224)
            w = int(s.get("width") or s.get("shortest_edge") or h)
        else:
            h = w = int(s)
    return int(cfg.get("num_channels", 3)), h, w, pre


def _audio_frames(cfg: dict, samples: int) -> int:
    n = samples
    for k, s in zip(cfg.get("conv_kernel", []), cfg.get("conv_stride", [])):
        n = (n - k) // s + 1
    return n


def _pixels(c: int, h: int, w: int) -> dict:
    pixels = {"name": "pixel_values", "dtype": "float32", "shape": [c, h, w]}
    if c in (1, 3):  # what Triton's image clients lay the image out by
        pixels["format"] = "FORMAT_NCHW"
    return pixels


def _with_labels(output: dict, cfg: dict) -> dict:
    """A classification output with ``labels`` from config.json's id2label (one per class), for class_count."""
    labels = hf_labels(cfg)
    if labels and len(labels) == output["shape"][-1]:
        output["labels"] = labels
    return output


def infer_io(cfg: dict, folder: Path, task: str, pooling: str) -> dict:
    """Spec fragments (raw YAML form) for inputs, outputs, dims, max_batch_size."""
    if task == "image-classification":
        c, h, w, _ = image_geometry(cfg, folder)
        return {
            "inputs": [_pixels(c, h, w)],
            "outputs": [_with_labels({"name": "logits", "dtype": "float32", "shape": [num_labels(cfg)]}, cfg)],
            "dims": {}, "max_batch_size": 8,
        }
    if task == "audio-encoder":
        # samples are fixed (one second at 16 kHz by default): the frame count follows from them
        samples = 16000
        return {
            "inputs": [{"name": "input_values", "dtype": "float32", "shape": [samples]}],
            "outputs": [{"name": "last_hidden_state", "dtype": "float32",
                         "shape": [_audio_frames(cfg, samples), _hidden(cfg)]}],
            "dims": {}, "max_batch_size": 4,
        }
    vocab = cfg.get("vocab_size")
    if not isinstance(vocab, int):
        raise UserError(f"config.json of '{folder.name}' has no vocab_size; is '{task}' right for a {cfg['model_type']} model?")
    maxpos = max_positions(cfg) or 512
    inputs = [
        {"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, vocab]},
        {"name": "attention_mask", "dtype": "int64", "shape": ["seq"], "range": [1, 2]},
    ]
    tv = cfg.get("type_vocab_size")
    if isinstance(tv, int) and tv > 0 and task != "causal-lm":
        inputs.append({"name": "token_type_ids", "dtype": "int64", "shape": ["seq"], "range": [0, tv]})
    if task == "feature-extraction":
        out = ({"name": "last_hidden_state", "dtype": "float32", "shape": ["seq", _hidden(cfg)]} if pooling == "none"
               else {"name": "embeddings", "dtype": "float32", "shape": [_hidden(cfg)]})
    elif task == "sequence-classification":
        out = _with_labels({"name": "logits", "dtype": "float32", "shape": [num_labels(cfg)]}, cfg)
    elif task == "token-classification":
        out = {"name": "logits", "dtype": "float32", "shape": ["seq", num_labels(cfg)]}
    else:  # causal-lm
        out = {"name": "logits", "dtype": "float32", "shape": ["seq", vocab]}
    opt = min(128, maxpos)
    return {"inputs": inputs, "outputs": [out], "dims": {"seq": [1, opt, maxpos]},
            "max_batch_size": 4 if task == "causal-lm" else 8}


@dataclass(frozen=True)
class HFInfo:
    folder: Path
    task: str
    pooling: str
    normalize: bool
    trust: bool
    config: dict


def read_source(raw: dict, where: str, root: Path) -> HFInfo:
    """Validate ``source: {huggingface, task, pooling, normalize, trust}``; reads JSON files only."""
    folder = resolve_folder(raw.get("huggingface"), f"{where}.huggingface", root)
    cfg = read_config(folder, f"{where}.huggingface")
    trust = raw.get("trust", False)
    if not isinstance(trust, bool):
        raise UserError(f"{where}.trust: expected true or false, got {trust!r}")
    task = raw.get("task")
    if task is None:
        task = guess_task(cfg, folder)
    if task not in TASKS:
        raise UserError(f"{where}.task: '{task}' is not one of {', '.join(TASKS)}")
    st = sentence_transformers_pooling(folder)
    pooling = raw.get("pooling", st[0] if st else "mean")
    if pooling not in POOLINGS:
        raise UserError(f"{where}.pooling: '{pooling}' is not one of {', '.join(POOLINGS)}")
    normalize = raw.get("normalize", st[1] if st else False)
    if not isinstance(normalize, bool):
        raise UserError(f"{where}.normalize: expected true or false, got {normalize!r}")
    if task != "feature-extraction" and ("pooling" in raw or "normalize" in raw):
        raise UserError(f"{where}.pooling: only used with task feature-extraction; remove it for '{task}'")
    return HFInfo(folder=folder, task=task, pooling=pooling, normalize=normalize, trust=trust, config=cfg)


def fill_model(raw: dict, where: str, root: Path) -> dict:
    """The model mapping with what the spec omits filled in from the folder (the spec always wins)."""
    info = read_source(raw["source"], f"{where}.source", root)
    inferred = infer_io(info.config, info.folder, info.task, info.pooling)
    out = dict(raw)
    # what the folder decided is part of the spec from here on (and of its hash: a changed
    # sentence-transformers pooling rebuilds the artifacts)
    resolved = {"task": info.task}
    if info.task == "feature-extraction":
        resolved.update(pooling=info.pooling, normalize=info.normalize)
    out["source"] = {**raw["source"], **resolved}
    for key in ("inputs", "outputs", "max_batch_size"):
        if key not in out:
            out[key] = inferred[key]
    # id2label for the spec's own classification outputs too (the spec's labels win)
    found = {o["name"]: o["labels"] for o in inferred["outputs"] if "labels" in o}
    if found and isinstance(out["outputs"], list):
        out["outputs"] = [{**o, "labels": found[o["name"]]}
                          if isinstance(o, dict) and o.get("name") in found and "labels" not in o
                          and o.get("shape") and o["shape"][-1] == len(found[o["name"]]) else o
                          for o in out["outputs"]]
    dims = dict(out.get("dims") or {})
    used = {d for t in out["inputs"] if isinstance(t, dict) for d in t.get("shape", []) or [] if isinstance(d, str)}
    for name, v in inferred["dims"].items():
        if name in used and name not in dims:
            dims[name] = v
    if dims:
        out["dims"] = dims
    return out
