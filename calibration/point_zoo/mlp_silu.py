"""The stub's first design with SiLU: the timestep scaled to [0, 1] and joined to the point, three hidden layers."""

import torch
from torch import nn


class PointModel(nn.Module):
    def __init__(self, dim: int, width: int = 128):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, width), nn.SiLU(), nn.Linear(width, width), nn.SiLU(),
                                 nn.Linear(width, width), nn.SiLU(), nn.Linear(width, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.float()[:, None] / 1000], dim=1))
