"""DDPM noise predictor: a three-level UNet with self-attention at the lowest resolution.

Following Ho et al. (2020): residual blocks with GroupNorm + SiLU, a sinusoidal timestep
embedding passed through an MLP and added inside every residual block, and multi-head
self-attention only at the coarsest resolution (7x7 for 28-pixel images) and in the middle.

Optional class label: with num_classes = K > 0, forward(x, t, y) takes labels y in [0, K] (K is the
null label, "no class", also used for y = None); a label embedding gives a FiLM-style scale and shift
applied to the time embedding after its MLP.
"""

import torch
import torch.nn.functional as F
from torch import nn

from src.utils import SinusoidalTimestepEmbedding


def _groups(channels: int) -> int:
    """Largest group count <= 8 that divides the number of channels."""
    for g in (8, 6, 4, 3, 2, 1):
        if channels % g == 0:
            return g
    return 1


class ResBlock(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, time_dim: int, dropout: float = 0.1):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(in_ch), in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.time_proj = nn.Linear(time_dim, out_ch)
        self.norm2 = nn.GroupNorm(_groups(out_ch), out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: torch.Tensor, temb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = h + self.time_proj(F.silu(temb))[:, :, None, None]
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return h + self.skip(x)


class SelfAttention(nn.Module):
    """Pre-norm multi-head self-attention over the spatial positions, with a residual connection."""

    def __init__(self, channels: int, num_heads: int = 4):
        super().__init__()
        self.norm = nn.GroupNorm(_groups(channels), channels)
        self.attn = nn.MultiheadAttention(channels, num_heads, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        seq = self.norm(x).flatten(2).transpose(1, 2)  # (B, HW, C)
        out, _ = self.attn(seq, seq, seq, need_weights=False)
        return x + out.transpose(1, 2).reshape(b, c, h, w)


class Downsample(nn.Module):
    """Stride-2 conv; with padding 1 it maps 28 -> 14 -> 7 and 32 -> 16 -> 8 (odd sizes round up)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling to the skip connection's exact size, then a 3x3 conv."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, size) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=size, mode="nearest"))


class DiffusionModel(nn.Module):
    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0, channels=(32, 64, 96),
                 blocks_per_level: int = 2, dropout: float = 0.1, num_heads: int = 4):
        super().__init__()
        self.in_channels = in_channels
        self.image_size = image_size
        self.num_classes = num_classes
        base = channels[0]
        time_dim = base * 4

        self.time_embed = nn.Sequential(
            SinusoidalTimestepEmbedding(base),
            nn.Linear(base, time_dim),
            nn.SiLU(),
            nn.Linear(time_dim, time_dim),
        )
        if num_classes > 0:
            # FiLM on the time embedding: one (scale, shift) pair per label, plus one for the null label
            self.class_film = nn.Embedding(num_classes + 1, 2 * time_dim)

        self.conv_in = nn.Conv2d(in_channels, base, 3, padding=1)
        last = len(channels) - 1

        # Encoder
        self.down_blocks = nn.ModuleList()
        self.down_attn = nn.ModuleList()
        self.downsamples = nn.ModuleList()
        skip_channels = []
        ch = base
        for level, out_ch in enumerate(channels):
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(ResBlock(ch, out_ch, time_dim, dropout))
                attns.append(SelfAttention(out_ch, num_heads) if level == last else nn.Identity())
                ch = out_ch
                skip_channels.append(ch)
            self.down_blocks.append(blocks)
            self.down_attn.append(attns)
            self.downsamples.append(Downsample(ch) if level != last else nn.Identity())

        # Middle
        self.mid_block1 = ResBlock(ch, ch, time_dim, dropout)
        self.mid_attn = SelfAttention(ch, num_heads)
        self.mid_block2 = ResBlock(ch, ch, time_dim, dropout)

        # Decoder (mirrors the encoder, concatenating one skip per residual block)
        self.up_blocks = nn.ModuleList()
        self.up_attn = nn.ModuleList()
        self.upsamples = nn.ModuleList()
        for level in reversed(range(len(channels))):
            out_ch = channels[level]
            blocks, attns = nn.ModuleList(), nn.ModuleList()
            for _ in range(blocks_per_level):
                blocks.append(ResBlock(ch + skip_channels.pop(), out_ch, time_dim, dropout))
                attns.append(SelfAttention(out_ch, num_heads) if level == last else nn.Identity())
                ch = out_ch
            self.up_blocks.append(blocks)
            self.up_attn.append(attns)
            self.upsamples.append(Upsample(ch) if level != 0 else nn.Identity())

        self.norm_out = nn.GroupNorm(_groups(ch), ch)
        self.conv_out = nn.Conv2d(ch, in_channels, 3, padding=1)

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor = None) -> torch.Tensor:
        x = x.float()
        temb = self.time_embed(t)
        if self.num_classes > 0:
            if y is None:
                y = torch.full((x.shape[0],), self.num_classes, dtype=torch.long, device=x.device)
            scale, shift = self.class_film(y).chunk(2, dim=1)
            temb = temb * (1 + scale) + shift

        h = self.conv_in(x)
        skips, sizes = [], []
        for blocks, attns, down in zip(self.down_blocks, self.down_attn, self.downsamples):
            for block, attn in zip(blocks, attns):
                h = attn(block(h, temb))
                skips.append(h)
            sizes.append(h.shape[-2:])
            h = down(h)

        h = self.mid_block2(self.mid_attn(self.mid_block1(h, temb)), temb)

        sizes.pop()  # the lowest level is not upsampled into
        for blocks, attns, up in zip(self.up_blocks, self.up_attn, self.upsamples):
            for block, attn in zip(blocks, attns):
                h = attn(block(torch.cat([h, skips.pop()], dim=1), temb))
            if not isinstance(up, nn.Identity):
                h = up(h, sizes.pop())

        return self.conv_out(F.silu(self.norm_out(h))).float()
