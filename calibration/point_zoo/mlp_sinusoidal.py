"""An MLP on the point joined to the shipped sinusoidal embedding of t."""

import torch
from torch import nn

from src.utils import SinusoidalTimestepEmbedding


class PointModel(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        self.embed = SinusoidalTimestepEmbedding(32)
        layers, width = [], dim + 32
        for _ in range(3):
            layers += [nn.Linear(width, 128), nn.SiLU()]
            width = 128
        self.net = nn.Sequential(*layers, nn.Linear(128, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, self.embed(t)], dim=1))
