"""A small CNN with BatchNorm (conv-bn pairs for the graph optimiser to fuse), plain torch."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCNN(nn.Module):
    def __init__(self, num_classes: int = 10, width: int = 32, channels: int = 3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            _block(channels, w, 1), _block(w, w, 1), _block(w, 2 * w, 2), _block(2 * w, 2 * w, 1),
            _block(2 * w, 4 * w, 2), _block(4 * w, 4 * w, 1),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(4 * w, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.pool(self.features(images)).flatten(1))


def small_cnn(num_classes: int = 10, width: int = 32, seed: int = 0) -> SmallCNN:
    torch.manual_seed(seed)
    model = SmallCNN(num_classes, width)
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():  # non-trivial BN statistics, so a wrong fusion shows in the numbers
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.normal_(0, 0.1, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.uniform_(0.5, 1.5, generator=g)
            m.bias.data.normal_(0, 0.1, generator=g)
    return model.eval()
