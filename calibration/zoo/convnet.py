"""A student's plain conv net (one down, one up, no skips); the time embedding is added in every ConvLayer.
Optional class label: with num_classes = K > 0, forward(x, t, y) embeds y (K = null label, "no class"),
concatenates it with the time embedding and projects back to t_dim."""

import torch
from torch import nn
import torch.nn.functional as F

from src.utils import SinusoidalTimestepEmbedding


class ConvLayer(nn.Module):
    """3x3 conv -> add time embedding -> GroupNorm -> SiLU"""

    def __init__(self, c_in, c_out, t_dim):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.t_proj = nn.Linear(t_dim, c_out)
        self.norm = nn.GroupNorm(8, c_out)

    def forward(self, x, temb):
        h = self.conv(x)
        h = h + self.t_proj(temb)[:, :, None, None]
        return F.silu(self.norm(h))


class DiffusionModel(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        ch = 64      # channels at full resolution
        mid = 96     # channels at half resolution
        t_dim = 128

        # timestep -> vector
        self.time_embed = nn.Sequential(
            SinusoidalTimestepEmbedding(t_dim),
            nn.Linear(t_dim, t_dim),
            nn.SiLU(),
            nn.Linear(t_dim, t_dim),
        )

        # full resolution
        self.first = ConvLayer(in_channels, ch, t_dim)
        # go down once (stride 2)
        self.down = nn.Conv2d(ch, mid, 4, stride=2, padding=1)
        # middle: a stack of convs at half resolution
        self.middle = nn.ModuleList([ConvLayer(mid, mid, t_dim) for _ in range(4)])
        # back up to full resolution
        self.up = nn.ConvTranspose2d(mid, ch, 4, stride=2, padding=1)
        self.after_up = nn.ModuleList([ConvLayer(ch, ch, t_dim) for _ in range(2)])
        self.out = nn.Conv2d(ch, in_channels, 3, padding=1)

        # class label -> vector (only for conditional models; the last row is the null label)
        if num_classes > 0:
            self.label_embed = nn.Embedding(num_classes + 1, t_dim)
            self.cond_proj = nn.Sequential(nn.Linear(2 * t_dim, t_dim), nn.SiLU(), nn.Linear(t_dim, t_dim))

    def forward(self, x, t, y=None):
        H, W = x.shape[-2:]
        temb = self.time_embed(t)
        if self.num_classes > 0:
            if y is None:  # no label = null label
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            temb = self.cond_proj(torch.cat([temb, self.label_embed(y)], dim=1))

        h = self.first(x, temb)
        h = F.silu(self.down(h))
        for layer in self.middle:
            h = layer(h, temb)
        h = self.up(h)
        if h.shape[-2:] != (H, W):  # odd image sizes
            h = F.interpolate(h, size=(H, W), mode="nearest")
        for layer in self.after_up:
            h = layer(h, temb)
        return self.out(h).float()
