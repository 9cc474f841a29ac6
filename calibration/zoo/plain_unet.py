"""A small two-resolution UNet that predicts the noise added to an image.

Layout (C = 32):
    stem conv -> 2 res blocks (C)            -> skip1
    strided conv down -> 2 res blocks (2C)   -> skip2
    middle res block (2C)
    concat skip2 -> res block (2C)
    nearest upsample + conv -> concat skip1 -> res block (C)
    norm, SiLU, conv -> noise prediction
The timestep goes through a sinusoidal embedding and a small MLP, and is added
inside every residual block. With num_classes = K > 0 an optional class label
y (K is the "null label", no class) gets its own embedding, added to the time
embedding; with num_classes = 0 the model is unconditional as before.
"""

import torch
from torch import nn
import torch.nn.functional as F

from src.utils import SinusoidalTimestepEmbedding


def norm(channels):
    # 8 groups divides both 32 and 64 (and 96/128 for the concatenated inputs)
    return nn.GroupNorm(8, channels)


class ResBlock(nn.Module):
    def __init__(self, in_ch, out_ch, time_dim):
        super().__init__()
        self.norm1 = norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, out_ch)
        self.norm2 = norm(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        if in_ch != out_ch:
            self.skip = nn.Conv2d(in_ch, out_ch, 1)
        else:
            self.skip = nn.Identity()

    def forward(self, x, temb):
        h = self.conv1(F.silu(self.norm1(x)))
        # add the time embedding as a per-channel bias
        h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(F.silu(self.norm2(h)))
        return h + self.skip(x)


class DiffusionModel(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0):
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        c1, c2 = 32, 64
        time_dim = 128

        self.time_embed = nn.Sequential(
            SinusoidalTimestepEmbedding(32),
            nn.Linear(32, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        if num_classes > 0:
            # one extra row for the null label (index num_classes)
            self.label_embed = nn.Embedding(num_classes + 1, time_dim)

        self.stem = nn.Conv2d(in_channels, c1, 3, padding=1)

        # high resolution
        self.down1a = ResBlock(c1, c1, time_dim)
        self.down1b = ResBlock(c1, c1, time_dim)
        self.downsample = nn.Conv2d(c1, c2, 3, stride=2, padding=1)

        # low resolution
        self.down2a = ResBlock(c2, c2, time_dim)
        self.down2b = ResBlock(c2, c2, time_dim)
        self.mid = ResBlock(c2, c2, time_dim)
        self.up2 = ResBlock(c2 + c2, c2, time_dim)

        # back up
        self.upconv = nn.Conv2d(c2, c1, 3, padding=1)
        self.up1 = ResBlock(c1 + c1, c1, time_dim)

        self.out_norm = norm(c1)
        self.out_conv = nn.Conv2d(c1, in_channels, 3, padding=1)

    def forward(self, x, t, y=None):
        x = x.float()
        temb = self.time_embed(t)
        if self.num_classes > 0:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            temb = temb + self.label_embed(y)

        h = self.stem(x)
        h = self.down1a(h, temb)
        h = self.down1b(h, temb)
        skip1 = h

        h = self.downsample(h)  # 28 -> 14, 32 -> 16, odd sizes round up
        h = self.down2a(h, temb)
        h = self.down2b(h, temb)
        skip2 = h

        h = self.mid(h, temb)
        h = self.up2(torch.cat([h, skip2], dim=1), temb)

        # interpolate to exactly the skip's size so odd sizes also line up
        h = F.interpolate(h, size=skip1.shape[-2:], mode="nearest")
        h = self.upconv(h)
        h = self.up1(torch.cat([h, skip1], dim=1), temb)

        out = self.out_conv(F.silu(self.out_norm(h)))
        return out
