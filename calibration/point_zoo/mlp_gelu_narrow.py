"""A narrower MLP with GELU: 64 units in each of three hidden layers, the timestep as t / T beside the point."""

import torch
from torch import nn


class PointModel(nn.Module):
    def __init__(self, dim: int):
        super().__init__()
        layers, size = [], dim + 1
        for _ in range(3):
            layers += [nn.Linear(size, 64), nn.GELU()]
            size = 64
        self.net = nn.Sequential(*layers, nn.Linear(size, dim))

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        time = (t.to(x.dtype) / 1000).unsqueeze(-1)
        return self.net(torch.cat((x, time), dim=-1))
