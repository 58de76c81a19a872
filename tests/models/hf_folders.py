"""Tiny Hugging Face folders written offline (random weights, real architectures): what save_pretrained writes.

transformers builds each architecture from a config with no hub access; the folders are small so exports and
builds take seconds. The real checkpoint (all-MiniLM-L6-v2) is in tests/test_text_ensemble.py.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _save(model, folder: Path) -> Path:
    model.eval()
    model.save_pretrained(str(folder), safe_serialization=True)
    return folder


def bert(folder: Path, head: str = "", vocab_size: int = 30522, max_positions: int = 64, num_labels: int = 3,
         tokenizer_from: Path | None = None) -> Path:
    """A 2-layer BERT (hidden 32). head: "" (BertModel) | "seq" | "token". With ``tokenizer_from``, that
    folder's tokenizer files are copied in (a real vocabulary of the same size)."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.BertConfig(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=max_positions, num_labels=num_labels)
    cls = {"": tf.BertModel, "seq": tf.BertForSequenceClassification, "token": tf.BertForTokenClassification}[head]
    _save(cls(cfg), folder)
    if tokenizer_from is not None:
        for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.txt"):
            if (tokenizer_from / name).is_file():
                shutil.copy2(tokenizer_from / name, folder / name)
    return folder


def vit(folder: Path, num_labels: int = 5) -> Path:
    import json

    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.ViTConfig(image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                       intermediate_size=64, num_labels=num_labels)
    _save(tf.ViTForImageClassification(cfg), folder)
    (folder / "preprocessor_config.json").write_text(json.dumps(
        {"image_processor_type": "ViTImageProcessor", "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
         "size": {"height": 32, "width": 32}}))
    return folder


def gpt2(folder: Path) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.GPT2Config(vocab_size=500, n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    return _save(tf.GPT2LMHeadModel(cfg), folder)


def wav2vec2(folder: Path) -> Path:
    import torch
    import transformers as tf

    torch.manual_seed(0)
    cfg = tf.Wav2Vec2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                            conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3), num_feat_extract_layers=2,
                            num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2, vocab_size=10)
    return _save(tf.Wav2Vec2Model(cfg), folder)
