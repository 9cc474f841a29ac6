"""An independently written student solution of src/autoencoder.py (Level 8), used by the kata's tests/calibration.

Design: a plain convolutional VAE as a tutorial would write it: Conv2d + BatchNorm + ReLU, stride-2 convolutions
down (28 -> 14 -> 7), ConvTranspose2d up, a tanh at the end; the loss uses F.mse_loss(reduction="sum").
"""

import torch
import torch.nn.functional as F
from torch import nn


def conv_block(cin, cout, stride=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.BatchNorm2d(cout), nn.ReLU())


def up_block(cin, cout):
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.BatchNorm2d(cout), nn.ReLU())


class Autoencoder(nn.Module):
    def __init__(self, in_channels: int = 1, latent_channels: int = 4):
        super().__init__()
        self.encoder = nn.Sequential(
            conv_block(in_channels, 32),
            conv_block(32, 64, stride=2),   # 28 -> 14
            conv_block(64, 64),
            conv_block(64, 96, stride=2),   # 14 -> 7
            nn.Conv2d(96, 2 * latent_channels, 3, padding=1),
        )
        self.decoder = nn.Sequential(
            conv_block(latent_channels, 96),
            up_block(96, 64),               # 7 -> 14
            conv_block(64, 64),
            up_block(64, 32),               # 14 -> 28
            nn.Conv2d(32, in_channels, 3, padding=1),
            nn.Tanh(),
        )

    def encode(self, x):
        mean, logvar = torch.chunk(self.encoder(x), 2, dim=1)
        return mean, logvar

    def decode(self, z):
        return self.decoder(z)


def sample_latent(mean, logvar, generator=None):
    eps = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
    return mean + torch.exp(0.5 * logvar) * eps


def autoencoder_loss(autoencoder, x, kl_weight, generator=None):
    batch = x.shape[0]
    mean, logvar = autoencoder.encode(x)
    z = sample_latent(mean, logvar, generator)
    recon = F.mse_loss(autoencoder.decode(z), x, reduction="sum") / batch
    kl = 0.5 * torch.sum(mean.pow(2) + logvar.exp() - 1 - logvar) / batch
    return recon + kl_weight * kl


def latent_scale(latents):
    return 1.0 / latents.std().item()
