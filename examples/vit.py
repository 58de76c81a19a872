"""A Vision Transformer in plain torch (no torchvision), ViT-B/16 by default.

Every block is built and initialised independently (seeded), so no two layers share weights and
exporters cannot de-duplicate them: sizes and timings are those of a real ViT-B/16.
"""

from __future__ import annotations

import torch
from torch import nn


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class ViT(nn.Module):
    def __init__(self, image_size=224, patch_size=16, dim=768, depth=12, heads=12, num_classes=1000, channels=3):
        super().__init__()
        if image_size % patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        n = (image_size // patch_size) ** 2
        self.patch = nn.Conv2d(channels, dim, kernel_size=patch_size, stride=patch_size)
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.zeros(1, n + 1, dim))
        self.blocks = nn.Sequential(*[Block(dim, heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, pixel_values: torch.Tensor) -> torch.Tensor:
        x = self.patch(pixel_values).flatten(2).transpose(1, 2)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        x = self.norm(self.blocks(x))
        return self.head(x[:, 0])


def _init(model: nn.Module, seed: int) -> nn.Module:
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if p.dim() > 1:
            nn.init.trunc_normal_(p, std=0.02, generator=g)
        elif name.endswith("weight"):
            nn.init.ones_(p)
        else:
            nn.init.normal_(p, std=0.02, generator=g)
    return model.eval()


def vit_b16(num_classes: int = 1000, image_size: int = 224, seed: int = 0) -> ViT:
    return _init(ViT(image_size=image_size, num_classes=num_classes), seed)


def vit_tiny(num_classes: int = 10, image_size: int = 32, patch_size: int = 8, dim: int = 64, depth: int = 2,
             heads: int = 4, seed: int = 0) -> ViT:
    """A small ViT with the same structure, for tests."""
    return _init(ViT(image_size, patch_size, dim, depth, heads, num_classes), seed)
