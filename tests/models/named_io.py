"""Models whose inputs and outputs must be matched by name, not position (issue 14 items 2 and 3)."""

from __future__ import annotations

import torch
from torch import nn


class TwoIds(nn.Module):
    """Two int64 inputs that must not be swapped; an int64 output (exact) and a float one."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.emb = nn.Embedding(64, 4)

    def forward(self, input_ids, token_type_ids, scale: float = 1.0):
        code = input_ids * 10 + token_type_ids  # swapped inputs give other numbers
        return code, self.emb(code % 64).sum(-1) * scale


def two_ids():
    return TwoIds().eval()


class Encoder(nn.Module):
    """A submodule called ``embedding`` (its ONNX value is named so) and a dict output, BERT-style."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.embedding = nn.Embedding(50, 8)
        self.fc = nn.Linear(8, 4)

    def forward(self, input_ids, attention_mask=None):
        h = self.embedding(input_ids)
        if attention_mask is not None:
            h = h * attention_mask.unsqueeze(-1).to(h.dtype)
        return {"last_hidden_state": h, "pooler_output": self.fc(h.mean(1)), "nonzero": (h.abs().sum((1, 2)) > 0).unsqueeze(-1)}


def encoder():
    return Encoder().eval()


class Frames(nn.Module):
    """Raw samples -> frames: the output length follows from the input's, through a strided conv."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.conv = nn.Conv1d(1, 8, kernel_size=8, stride=4)

    def forward(self, input_values):
        return self.conv(input_values.unsqueeze(1)).transpose(1, 2)


def frames():
    return Frames().eval()


class Tiny(nn.Module):
    """Outputs around 1e-41 (denormals): cosine means nothing there."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        return self.fc(x) * 1e-41


def tiny():
    return Tiny().eval()


class BatchBranch(nn.Module):
    """forward() branches on the batch size: torch.export specialises the batch dim (the dynamo exporter then
    writes a graph for batch 2 only), and the legacy tracer bakes the branch it saw."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(4)
        self.fc = nn.Linear(12, 3)

    def forward(self, x):
        if x.shape[0] == 2:
            return self.fc(x.reshape(2, 12))
        return self.fc(x.flatten(1))


def batch_branch():
    return BatchBranch().eval()


class DeadHead(nn.Module):
    """A ReLU head whose bias pushes everything below zero: all zeros on any input, so the check is blind."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(5)
        self.fc = nn.Linear(4, 3)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.fill_(-1.0)

    def forward(self, x):
        return torch.relu(self.fc(x))


def dead_head():
    return DeadHead().eval()


class PerSample(nn.Module):
    """A scalar per sample in and out: ``temperature`` [batch] scales the logits, ``score`` [batch] is their
    logsumexp and ``label`` [batch] the argmax (a regressor's or a ranker's shape)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(6)
        self.fc = nn.Linear(4, 5)

    def forward(self, x, temperature):
        z = self.fc(x) * temperature[:, None]
        return {"score": torch.logsumexp(z, -1), "label": z.argmax(-1)}


def per_sample():
    return PerSample().eval()


class Branchy(nn.Module):
    """forward() branches on a tensor's value: torch.export refuses it, a trace keeps one branch."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.fc = nn.Linear(4, 3)

    def forward(self, x):
        if x.sum() > 0:
            return self.fc(x)
        return -self.fc(x)


def branchy():
    return Branchy().eval()


class SqueezesTail(nn.Module):
    """Takes token positions 1.. and squeezes that axis: at seq 2 it disappears, so torch.export guards seq != 2
    (MobileBERT's trigram embedding does the same)."""

    def forward(self, x):
        return x[:, 1:].squeeze(1).sum(-1).reshape(x.shape[0], -1).sum(-1, keepdim=True)


def squeezes_tail():
    return SqueezesTail().eval()
