"""Fourier features of each coordinate (as in tiny-diffusion) and of t, then a residual MLP."""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding


class PointModel(nn.Module):
    def __init__(self, dim: int, width: int = 128):
        super().__init__()
        self.coordinates = SinusoidalTimestepEmbedding(32)
        self.time = SinusoidalTimestepEmbedding(32)
        self.inp = nn.Linear(dim * 32 + 32, width)
        self.hidden = nn.ModuleList(nn.Linear(width, width) for _ in range(3))
        self.out = nn.Linear(width, dim)

    def forward(self, x, t):
        features = [self.coordinates(25 * x[:, i]) for i in range(x.shape[1])] + [self.time(t)]
        h = self.inp(torch.cat(features, dim=1))
        for layer in self.hidden:
            h = h + layer(nn.functional.silu(h))
        return self.out(nn.functional.silu(h))
