"""``source: {huggingface: DIR, task: ...}``: a local Hugging Face folder as a tritongen model.

Never the hub: ``HF_HUB_OFFLINE=1`` and ``local_files_only=True``; a hub id instead of a folder is a
one-line error. What the spec leaves out (inputs, outputs, dims, integer ranges, max_batch_size) is
inferred from ``config.json`` and the task by the spec layer (``generator/spec/hf_folder.py``, JSON only), so
``tritongen validate``/``schema`` and spec parsing stay light; the tokenizer is loaded here, at build time
(``check_tokenizer``, ``write_tokenizer``, ``text_samples``). ``load`` builds the transformers model
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
from pathlib import Path

from generator.errors import UserError
from generator.spec.hf_folder import HUB_ID_RE, PADDINGS, POOLINGS, TASKS, WEIGHTS_PICKLE, WEIGHTS_SAFE, HFInfo, fill_model, guess_task, image_geometry, infer_io, max_positions, num_labels, read_config, read_source, resolve_folder, sentence_transformers_pooling, source_files, weight_files
from generator.spec.preprocess import TextPreprocess


def _never_download() -> None:
    os.environ["HF_HUB_OFFLINE"] = "1"
    os.environ["TRANSFORMERS_OFFLINE"] = "1"
    os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")


# ------------------------------------------------------------------------------------ text preprocess




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


def check_tokenizer(model) -> None:
    """The tokenizer of ``preprocess.text`` matches the model's vocabulary (loads the tokenizer: build time)."""
    pre = model.preprocess
    if not isinstance(pre, TextPreprocess):
        return
    where = f"{model.where}.preprocess.text.tokenizer"
    cfg = None
    if model.source.kind == "huggingface":
        cfg = read_config(model.source.path, f"{model.where}.source.huggingface")
    ids = next((i for i in model.inputs if i.name == "input_ids"), None)
    vocab = cfg.get("vocab_size") if cfg else (ids.range[1] if ids is not None and ids.range else None)
    if vocab:
        tok = load_fast_tokenizer(pre.tokenizer, where)
        size = tok.get_vocab_size(with_added_tokens=True)
        if size > vocab or size < 0.9 * vocab:
            raise UserError(
                f"{where}: its vocabulary has {size} tokens but the model's has {vocab}; "
                "give the tokenizer that was trained with this model"
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
