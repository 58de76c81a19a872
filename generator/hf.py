"""``source: {huggingface: DIR, task: ...}``: a local Hugging Face folder as a tritongen model.

Never the hub: ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``; a hub id instead of a folder is a
one-line error. What the spec leaves out (inputs, outputs, dims, integer ranges, max_batch_size) is
inferred here from ``config.json`` and the task, reading JSON only (no transformers import), so
``tritongen validate``/``schema`` and spec parsing stay light. ``load`` builds the transformers model
and wraps it in an ``nn.Module`` whose ``forward`` takes the declared inputs positionally (in the spec's
order) and returns a tuple of the declared outputs, picked by key from the model's output dict.

Tasks:
- ``feature-extraction``: ``embeddings`` [hidden] (``pooling: mean | cls``, ``normalize``) or, with
  ``pooling: none``, ``last_hidden_state`` [seq, hidden]. A sentence-transformers folder (modules.json,
  1_Pooling/config.json, Normalize) gives the pooling and normalisation.
- ``sequence-classification``: ``logits`` [num_labels]; ``token-classification``: ``logits`` [seq, num_labels].
- ``image-classification``: ``pixel_values`` [C, H, W] -> ``logits`` [num_labels].
- ``causal-lm``: ``logits`` [seq, vocab] (no KV cache).
- ``audio-encoder``: ``input_values`` [samples] -> ``last_hidden_state`` [frames, hidden] (wav2vec2-style:
  frames follow the samples through the conv feature extractor; inferred from conv_kernel/conv_stride).
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import UserError

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
_TEXT_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _never_download() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


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


def _with_labels(output: dict, cfg: dict) -> dict:
    """A classification output with ``labels`` from config.json's id2label (one per class), for class_count."""
    from .classes import hf_labels

    labels = hf_labels(cfg)
    if labels and len(labels) == output["shape"][-1]:
        output["labels"] = labels
    return output


def infer_io(cfg: dict, folder: Path, task: str, pooling: str) -> dict:
    """Spec fragments (raw YAML form) for inputs, outputs, dims, max_batch_size."""
    if task == "image-classification":
        c, h, w, _ = image_geometry(cfg, folder)
        pixels = {"name": "pixel_values", "dtype": "float32", "shape": [c, h, w]}
        if c in (1, 3):  # what Triton's image clients lay the image out by
            pixels["format"] = "FORMAT_NCHW"
        return {
            "inputs": [pixels],
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


# ------------------------------------------------------------------------------------ text preprocess


@dataclass(frozen=True)
class TextPreprocess:
    """CPU tokenisation (python backend, the fast tokenizer): strings -> the model's token inputs."""

    tokenizer: Path  # the folder holding tokenizer.json (or files AutoTokenizer reads)
    max_length: int
    padding: str = "longest"  # longest (per request) | max_length
    outputs: tuple = ()  # model inputs the tokenizer feeds: ((input name, "ids"|"attention_mask"|"type_ids"), ...)
    variant: str | None = None
    instances: int = 1
    execution_env: str | None = None  # EXECUTION_ENV_PATH for the NGC target


_ENCODING_FIELDS = {"input_ids": "ids", "attention_mask": "attention_mask", "token_type_ids": "type_ids"}


def load_fast_tokenizer(folder: Path, where: str):
    """A ``tokenizers.Tokenizer``: tokenizer.json directly, else converted by transformers (offline)."""
    tj = folder / "tokenizer.json"
    if tj.is_file():
        from tokenizers import Tokenizer

        try:
            return Tokenizer.from_file(str(tj))
        except Exception as e:
            raise UserError(f"{where}: {tj} is not a readable tokenizer.json ({str(e)[:150]})")
    _never_download()
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:
        raise UserError(f"{where}: '{folder}' holds no tokenizer (no tokenizer.json; transformers: "
                        f"{(str(e).strip().splitlines() or [type(e).__name__])[0][:150]})")
    if not getattr(tok, "is_fast", False):
        raise UserError(f"{where}: '{folder}' has only a slow tokenizer; save a fast one (tokenizer.json)")
    return tok.backend_tokenizer


def parse_text_preprocess(raw: dict, where: str, root: Path, inputs, source_raw: Any) -> TextPreprocess:
    """``preprocess: {text: {tokenizer, max_length, padding, execution_env}, variant, instances}``."""
    from .spec import _Fields  # the parser's own field reader: same messages

    f = _Fields(raw, where, ("text", "variant", "instances"))
    t = _Fields(f.dict("text"), f.path("text"), ("tokenizer", "max_length", "padding", "execution_env"))
    model_folder = None
    cfg = None
    if isinstance(source_raw, dict) and isinstance(source_raw.get("huggingface"), str):
        model_folder = resolve_folder(source_raw["huggingface"], "source.huggingface", root)
        cfg = read_config(model_folder, "source.huggingface")
    tok_value = t.str("tokenizer", default=None)
    if tok_value is None:
        if model_folder is None:
            raise UserError(f"{t.path('tokenizer')}: missing; give the folder holding tokenizer.json")
        tok_folder = model_folder
    else:
        tok_folder = resolve_folder(tok_value, t.path("tokenizer"), root, "a tokenizer folder")
    feeds = [(i.name, _ENCODING_FIELDS[i.name]) for i in inputs if i.name in _ENCODING_FIELDS]
    if not any(n == "input_ids" for n, _ in feeds):
        raise UserError(f"{where}.text: the model has no input named input_ids; text preprocessing feeds "
                        f"input_ids/attention_mask/token_type_ids")
    ids = next(i for i in inputs if i.name == "input_ids")
    if ids.dtype.is_float:
        raise UserError(f"{where}.text: input_ids is {ids.dtype.name}; token ids are integers (int64)")
    seq = ids.shape[-1] if ids.shape else None
    limit = max_positions(cfg) if cfg else None
    if isinstance(seq, int):
        limit = seq if limit is None else min(limit, seq)
    max_length = t.int("max_length", default=None, minimum=1)
    if max_length is None:
        if limit is None:
            raise UserError(f"{t.path('max_length')}: missing; set the longest token sequence to send the model")
        max_length = limit
    if limit is not None and max_length > limit:
        raise UserError(f"{t.path('max_length')}: {max_length} is above the model's position limit {limit}; "
                        f"lower it to {limit} or less")
    padding = t.str("padding", "longest")
    if padding not in PADDINGS:
        raise UserError(f"{t.path('padding')}: '{padding}' is not one of {', '.join(PADDINGS)}")
    if isinstance(seq, int) and padding != "max_length":
        raise UserError(f"{t.path('padding')}: input_ids has a fixed length {seq}; use padding: max_length")
    vocab = cfg.get("vocab_size") if cfg else (ids.range[1] if ids.range else None)
    if vocab:
        tok = load_fast_tokenizer(tok_folder, t.path("tokenizer"))
        size = tok.get_vocab_size(with_added_tokens=True)
        if size > vocab or size < 0.9 * vocab:
            raise UserError(
                f"{t.path('tokenizer')}: its vocabulary has {size} tokens but the model's has {vocab}; "
                "give the tokenizer that was trained with this model"
            )
    return TextPreprocess(
        tokenizer=tok_folder, max_length=max_length, padding=padding, outputs=tuple(feeds),
        variant=f.str("variant"), instances=f.int("instances", 1, minimum=1),
        execution_env=t.str("execution_env"),
    )


# ------------------------------------------------------------------------------------------ loading


_AUTO = {
    "feature-extraction": "AutoModel",
    "sequence-classification": "AutoModelForSequenceClassification",
    "token-classification": "AutoModelForTokenClassification",
    "image-classification": "AutoModelForImageClassification",
    "causal-lm": "AutoModelForCausalLM",
    "audio-encoder": "AutoModel",
}


def load(model, root: Path):
    """An eval-mode ``nn.Module``: forward(*declared inputs) -> tuple(declared outputs)."""
    _never_download()
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()

    where = f"{model.where}.source"
    info = read_source(model.raw["source"], where, root)
    weight_files(info.folder, f"{where}.huggingface", info.trust)
    names_in = [t.name for t in model.inputs]
    names_out = [t.name for t in model.outputs]
    _check_outputs(info, names_out, f"{model.where}.outputs")
    cls = getattr(transformers, _AUTO[info.task])
    try:
        hf_model = cls.from_pretrained(
            str(info.folder), local_files_only=True, use_safetensors=None if info.trust else True,
            dtype=torch.float32,  # attention: transformers picks (sdpa where the model has it)
        )
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:200]
        raise UserError(f"{where}.huggingface: transformers cannot load '{info.folder.name}' for task "
                        f"'{info.task}' ({type(e).__name__}: {first}); check source.task")
    hf_model.eval()
    return _wrap(hf_model, info, names_in, names_out, where)


_KNOWN_OUTPUTS = {
    "feature-extraction": ("last_hidden_state", "pooler_output"),
    "sequence-classification": ("logits",),
    "token-classification": ("logits",),
    "image-classification": ("logits",),
    "causal-lm": ("logits",),
    "audio-encoder": ("last_hidden_state", "extract_features"),
}


def _check_outputs(info: HFInfo, names_out: list[str], where: str) -> None:
    known = list(_KNOWN_OUTPUTS[info.task]) + (["embeddings"] if info.task == "feature-extraction"
                                               and info.pooling != "none" else [])
    bad = [n for n in names_out if n not in known]
    if bad:
        raise UserError(f"{where}: a {info.task} model has no output '{bad[0]}'; name outputs after its keys: "
                        f"{', '.join(known)}")


def _wrap(hf_model, info: HFInfo, names_in: list[str], names_out: list[str], where: str):
    import torch

    class HFWrapper(torch.nn.Module):
        """Declared inputs by position -> the HF model by keyword -> declared outputs by key."""

        def __init__(self):
            super().__init__()
            self.model = hf_model
            self.input_names = list(names_in)
            self.output_names = list(names_out)
            self.pooling = info.pooling if info.task == "feature-extraction" else "none"
            self.normalize = info.normalize
            self.causal = info.task == "causal-lm"

        def run(self, *args):
            kwargs = dict(zip(self.input_names, args))
            if self.causal:
                kwargs["use_cache"] = False
            out = self.model(**kwargs, return_dict=True)
            found = {k: v for k, v in out.items() if isinstance(v, torch.Tensor)}
            if self.pooling != "none":
                h = found["last_hidden_state"]
                if self.pooling == "cls":
                    e = h[:, 0]
                else:
                    m = kwargs.get("attention_mask")
                    m = torch.ones(h.shape[:2], dtype=h.dtype) if m is None else m.to(h.dtype)
                    e = (h * m.unsqueeze(-1)).sum(1) / m.sum(1, keepdim=True).clamp(min=1e-9)
                if self.normalize:
                    e = torch.nn.functional.normalize(e, p=2.0, dim=-1)
                found["embeddings"] = e
            return tuple(found[n] for n in self.output_names)

    # forward gets one positional parameter per declared input, so exporters see a plain signature
    # (with forward(*args) the dynamo exporter fails and the build falls back to the legacy one).
    # named after the declared inputs (tritongen passes inputs by name), when they are identifiers
    import keyword

    plain = all(n.isidentifier() and not keyword.iskeyword(n) and n != "self" for n in names_in)
    params = ", ".join(names_in if plain else [f"a{i}" for i in range(len(names_in))])
    ns: dict = {}
    exec(f"def forward(self, {params}):\n    return self.run({params})\n", ns)  # generated identifiers only
    HFWrapper.forward = ns["forward"]
    module = HFWrapper()
    module.eval()
    return module


def pad_token(folder: Path) -> str | None:
    """The tokenizer's padding token, as transformers reads it (tokenizer_config / special_tokens_map)."""
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        p = folder / name
        if p.is_file():
            try:
                v = json.loads(p.read_text()).get("pad_token")
            except ValueError:
                continue
            if isinstance(v, dict):
                v = v.get("content")
            if isinstance(v, str) and v:
                return v
    return None


def write_tokenizer(folder: Path, dest: Path, where: str) -> None:
    """``dest/tokenizer.json``: the folder's own, or the fast tokenizer transformers converts (offline)."""
    dest.mkdir(parents=True, exist_ok=True)
    src = folder / "tokenizer.json"
    if src.is_file():
        import shutil

        shutil.copy2(src, dest / "tokenizer.json")
    else:
        load_fast_tokenizer(folder, where).save(str(dest / "tokenizer.json"))


def text_samples(model, path: Path, where: str) -> list[dict]:
    """``calibration.data: sentences.txt`` (one a line) -> feeds of batch 1, tokenised exactly as the served
    tokenizer does (same tokenizer.json, truncation, no padding within one sentence). Used for INT8
    calibration and, as for every calibration set, for the task gate (real sentences, not random ids)."""
    import numpy as np

    pre = model.preprocess
    if not isinstance(pre, TextPreprocess):
        raise UserError(f"{where}: '{path.name}' is a text file but {model.where} declares no preprocess.text; "
                        "add preprocess: {text: {...}} or give an .npz file")
    lines = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]
    if not lines:
        raise UserError(f"{where}: '{path.name}' holds no sentences; write one sentence per line")
    tok = load_fast_tokenizer(pre.tokenizer, f"{model.where}.preprocess.text.tokenizer")
    tok.no_padding()
    tok.enable_truncation(max_length=pre.max_length)
    fields = dict(pre.outputs)
    n = min(len(lines), model.calibration.samples) if model.calibration.samples else len(lines)
    batched = model.max_batch_size > 0
    lo = model.dims.get("seq", (1, 1, pre.max_length))[0]
    out = []
    for enc in tok.encode_batch(lines[:n]):
        if len(enc.ids) < lo:
            continue
        feeds = {}
        for t in model.inputs:
            if t.name not in fields:
                raise UserError(f"{where}: input '{t.name}' does not come from the tokenizer; give an .npz file")
            arr = np.asarray(getattr(enc, fields[t.name]), dtype=t.dtype.numpy)
            feeds[t.name] = arr[None] if batched else arr
        out.append(feeds)
    return out
