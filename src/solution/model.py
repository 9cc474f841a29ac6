"""Reference noise-prediction network: diffusers' UNet2DModel behind the kata's model contract."""

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from diffusers import UNet2DModel
from torch import nn


class DiffusionModel(nn.Module):
    """eps_theta(x_t, t) or, class-conditional, eps_theta(x_t, t, y): a UNet that predicts the noise in x_t.

    Args:
        in_channels: image channels (1 for Fashion-MNIST, 3 for CIFAR-10).
        image_size: image height = width. A UNet with L levels halves the size L-1 times, so
            inputs are zero-padded up to a multiple of 2^(L-1) and the output is cropped back.
        num_classes: K > 0 for a class-conditional model (Level 6): an embedding of the K classes and the null
            label K is added to the time embedding; 0 for none.
        block_out_channels: channels of each level, e.g. (32, 64, 128).
        layers_per_block: ResNet blocks per level.
        attention: one flag per level: self-attention in that level's blocks.
        mid_attention: self-attention in the bottleneck.
        norm_num_groups: GroupNorm groups; must divide every entry of block_out_channels.
    """

    def __init__(self, in_channels: int, image_size: int, num_classes: int = 0,
                 block_out_channels: Sequence[int] = (32, 64, 128),
                 layers_per_block: int = 1, attention: Sequence[bool] | None = None,
                 mid_attention: bool = False, norm_num_groups: int = 8):
        super().__init__()
        block_out_channels = tuple(block_out_channels)
        attention = tuple(attention) if attention is not None else (False,) * len(block_out_channels)
        multiple = 2 ** (len(block_out_channels) - 1)
        self.image_size, self.num_classes = image_size, num_classes
        self.padded_size = -(-image_size // multiple) * multiple
        self.unet = UNet2DModel(
            sample_size=self.padded_size,
            in_channels=in_channels,
            out_channels=in_channels,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            down_block_types=tuple("AttnDownBlock2D" if a else "DownBlock2D" for a in attention),
            up_block_types=tuple("AttnUpBlock2D" if a else "UpBlock2D" for a in reversed(attention)),
            add_attention=mid_attention,
            norm_num_groups=norm_num_groups,
            num_class_embeds=num_classes + 1 if num_classes else None,
        )

    def forward(self, x: torch.Tensor, t: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, C, H, W) noisy images; t: (B,) int64 timesteps in [0, T); y: (B,) int64 labels in [0, K] of a
        class-conditional model, None for the null label K. Returns eps: (B, C, H, W)."""
        if self.num_classes and y is None:
            y = torch.full((len(x),), self.num_classes, dtype=torch.long, device=x.device)
        pad = self.padded_size - x.shape[-1]
        if pad:
            x = F.pad(x, (0, pad, 0, pad))
        eps = self.unet(x, t, class_labels=y).sample
        return eps[..., : eps.shape[-2] - pad, : eps.shape[-1] - pad] if pad else eps
