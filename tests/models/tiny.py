"""Tiny models for tests, one per shape of problem: image ViT, conv-bn CNN, two-input text model
with a named dynamic dim and two outputs, and models that break on purpose."""

from __future__ import annotations

import torch
from torch import nn


class TextModel(nn.Module):
    """token ids + attention mask (int64, [seq]) -> (pooled [16], per-token logits [seq, 5])."""

    def __init__(self, vocab: int = 50, dim: int = 16):
        super().__init__()
        torch.manual_seed(3)
        self.emb = nn.Embedding(vocab, dim)
        self.layer = nn.TransformerEncoderLayer(dim, 2, 32, dropout=0.0, batch_first=True)
        self.tok = nn.Linear(dim, 5)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor):
        h = self.layer(self.emb(input_ids))
        m = attention_mask.unsqueeze(-1).to(h.dtype)
        pooled = (h * m).sum(1) / m.sum(1).clamp(min=1.0)
        return pooled, self.tok(h)


def text_model(vocab: int = 50):
    return TextModel(vocab).eval()


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        y = self.fc(x)
        return y, y * 2


def two_outputs():
    torch.manual_seed(0)
    return TwoOutputs().eval()


class Linear(nn.Module):
    def __init__(self, n_in: int = 4, n_out: int = 3):
        super().__init__()
        self.fc = nn.Linear(n_in, n_out)

    def forward(self, x):
        return self.fc(x)


def linear(n_in: int = 4, n_out: int = 3):
    torch.manual_seed(0)
    return Linear(n_in, n_out).eval()


def nan_linear():
    """A linear layer whose weights hold a NaN (a diverged training run's checkpoint): output 0 is NaN."""
    m = linear()
    with torch.no_grad():
        m.fc.weight[0, 0] = float("nan")
    return m


def raising_with_brackets():
    raise RuntimeError("bad config [/red] in [bold]layer[/bold]")


def conv_only():
    """Convolutions and pooling only (SqueezeNet's shape): no MatMul or Gemm node for dynamic INT8."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.ReLU(),
                               torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten()).eval()


class _Upsampled(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 2, 3, padding=1)

    def forward(self, x):
        return torch.nn.functional.interpolate(self.conv(x), scale_factor=2.0, mode="bilinear", align_corners=False)


def upsampled():
    """A segmentation head's end (LRASPP): the output comes straight from a bilinear Resize, an op the fp16
    converter keeps in fp32."""
    torch.manual_seed(0)
    return _Upsampled().eval()


def not_a_module():
    return {"weights": 1}


def raising_factory():
    raise RuntimeError("factory exploded")


# --- an op no ONNX exporter can translate: a custom operator with no ONNX translation
@torch.library.custom_op("tritongen_test::mystery", mutates_args=())
def mystery(x: torch.Tensor) -> torch.Tensor:
    return x.sin() * 2


@mystery.register_fake
def _(x):
    return torch.empty_like(x)


class Unexportable(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return mystery(self.fc(x))


def unexportable():
    torch.manual_seed(0)
    return Unexportable().eval()


class NormedLinear(nn.Module):
    """A Linear followed by BatchNorm1d: its state_dict has ``bn.num_batches_tracked``."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)
        self.bn = nn.BatchNorm1d(3)

    def forward(self, x):
        return self.bn(self.fc(x))


def normed_linear():
    return NormedLinear().eval()


class WithWeights(nn.Module):
    """Returns its weight's column sums beside the batch's output: a tensor with no batch dim."""

    def __init__(self):
        super().__init__()
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return self.fc(x), self.fc.weight.sum(0)


def with_weights():
    return WithWeights().eval()


def unseeded_linear():
    """Initialised at random on every call: what a factory without a checkpoint and without a seed gives."""
    return Linear().eval()


class _Scale2(torch.autograd.Function):
    """A custom autograd Function (as transformers' Bloom has for its GELU): Python that TorchScript cannot save."""

    @staticmethod
    def forward(ctx, x):
        return x * 2

    @staticmethod
    def backward(ctx, g):
        return g * 2


class WithAutogradFunction(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        return _Scale2.apply(self.fc(x))


def with_autograd_function():
    return WithAutogradFunction().eval()


class GrayCNN(nn.Module):
    """A grayscale (1-channel) image classifier, MNIST-sized."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.conv = nn.Conv2d(1, 4, 3)
        self.fc = nn.Linear(4, 10)

    def forward(self, x):
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


def gray_cnn():
    return GrayCNN().eval()


class HParams:
    """What a Lightning checkpoint's hyper_parameters hold: a Python object, which weights_only=True refuses."""

    def __init__(self, lr: float):
        self.lr = lr
