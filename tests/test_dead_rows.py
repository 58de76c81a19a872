"""Dead rows (generator/variants/ov_rows.py): an OpenVINO model computes only the rows its outputs read.

Each model goes through OpenVINO's PyTorch frontend as the build does; the pruned model must answer as the
unpruned one (to f32 summation order: a one-row GEMM may take another kernel on another CPU) and as PyTorch,
and the MatMul work it removes is checked against a count made by hand from the architecture, not from the pass. Where an output needs every row (a second output, mean pooling,
causal attention), the pass must leave that work alone and still answer right."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from generator.variants.ov_rows import prune

ov = pytest.importorskip("openvino")


def _convert(module, example, shape):
    with torch.no_grad():
        return ov.convert_model(module.eval(), example_input=example, input=[shape])


def _run(model, x):
    return [np.asarray(v) for v in ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})(x).values()]


def _check(module, model, xs, atol=1e-4):
    """Pruned answers equal the unpruned model's and PyTorch's on every input of xs (work counted at xs[0])."""
    original = model.clone()
    info = prune(model, [xs[0].shape])
    for x in xs:
        with torch.no_grad():
            want = module(torch.from_numpy(x))
        want = [w.numpy() for w in (want if isinstance(want, tuple) else (want,))]
        for got, before, w in zip(_run(model, x), _run(original, x), want):
            np.testing.assert_allclose(got, before, atol=1e-4, rtol=1e-4)  # one row: a GEMM of another shape
            np.testing.assert_allclose(got, w, atol=atol, rtol=1e-3)
    return info


def test_a_vit_computes_its_last_block_for_the_class_token_only():
    from examples.vit import vit_tiny

    m = vit_tiny()  # 32 px, patch 8: 16 patches + the class token = 17 tokens, dim 64, MLP 256, 2 blocks, 10 classes
    x = np.random.default_rng(0).standard_normal((3, 3, 32, 32)).astype(np.float32)
    model = _convert(m, (torch.from_numpy(x[:2]),), ov.PartialShape([-1, 3, 32, 32]))
    info = _check(m, model, [x, x[:1]])
    d, mlp, tokens, heads, hd = 64, 256, 17, 4, 16
    per_token = 2 * (3 * d * d + d * d + 2 * d * mlp)      # Q, K, V, out projections and the MLP (MatMul ops)
    per_query = 2 * heads * tokens * (hd + hd)             # attention: q . K^T and p . V for one query
    block = tokens * (per_token + per_query)
    assert info["matmul_ops_before"] == 3 * (2 * block + 2 * d * 10)  # counted at batch 3
    # the last block still needs K and V of every token; Q, attention, out and the MLP only for the class token
    saved = (tokens - 1) * (2 * (d * d + d * d + 2 * d * mlp) + per_query)
    assert info["matmul_ops_before"] - info["matmul_ops_after"] == 3 * saved
    assert info["selections"] == 1 and info["rewritten"] > 0
    assert sum(op.get_type_name() == "Slice" for op in model.get_ops()) >= 1


class _TwoHeads(nn.Module):
    """Returns the whole sequence as well: nothing before it may be pruned."""

    def __init__(self):
        super().__init__()
        self.proj, self.head = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        h = torch.relu(self.proj(x))
        return self.head(h[:, 0]), h


class _MeanPool(nn.Module):
    def __init__(self):
        super().__init__()
        self.proj, self.head = nn.Linear(16, 16), nn.Linear(16, 4)

    def forward(self, x):
        return self.head(torch.relu(self.proj(x)).mean(1))


def test_an_output_that_reads_every_row_keeps_them_all():
    x = np.random.default_rng(1).standard_normal((2, 5, 16)).astype(np.float32)
    for cls in (_TwoHeads, _MeanPool):
        torch.manual_seed(0)
        m = cls()
        model = _convert(m, (torch.from_numpy(x),), ov.PartialShape([-1, 5, 16]))
        info = _check(m, model, [x])
        assert info["matmul_ops_after"] == info["matmul_ops_before"], cls.__name__


class _Decoder(nn.Module):
    """A causal block over token ids, reading the last token (a decoder's next-token logits)."""

    def __init__(self, causal: bool):
        super().__init__()
        self.causal = causal
        self.emb, self.qkv, self.out = nn.Embedding(50, 32), nn.Linear(32, 96), nn.Linear(32, 32)
        self.mlp, self.head = nn.Sequential(nn.Linear(32, 64), nn.GELU(), nn.Linear(64, 32)), nn.Linear(32, 50)

    def forward(self, ids):
        x = self.emb(ids)
        b, s, _ = x.shape
        q, k, v = self.qkv(x).view(b, s, 3, 2, 16).permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=self.causal)
        x = x + self.out(a.transpose(1, 2).reshape(b, s, 32))
        x = x + self.mlp(x)
        return self.head(x[:, -1])


@pytest.mark.parametrize("causal", [False, True])
def test_the_last_token_of_a_dynamic_sequence(causal):
    """x[:, -1] with the sequence length dynamic: the last row is the same row at every length. Causal attention
    stops the walk at the attention (a query's keys depend on its position) -- what follows it is still pruned."""
    torch.manual_seed(0)
    m = _Decoder(causal)
    rng = np.random.default_rng(2)
    ids = [rng.integers(0, 50, (2, n)).astype(np.int64) for n in (7, 3, 12)]
    model = _convert(m, (torch.from_numpy(ids[0]),), ov.PartialShape([-1, -1]))
    info = _check(m, model, ids)
    assert info["rewritten"] > 0 and info["matmul_ops_after"] < info["matmul_ops_before"]
    sdpa = [op for op in model.get_ops() if op.get_type_name() == "ScaledDotProductAttention"]
    queries = [op.get_input_partial_shape(0)[2].get_max_length() for op in sdpa]  # -1: unbounded
    assert queries == ([-1] if causal else [1]), queries  # causal: every query still computed; else one row
