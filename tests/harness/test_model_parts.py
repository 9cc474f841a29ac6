"""The provided helper (src/utils.py) and the reference model's handling of awkward sizes."""

import pytest
import torch

from src.solution.model import DiffusionModel
from src.utils import SinusoidalTimestepEmbedding


def test_sinusoidal_embedding_values():
    emb = SinusoidalTimestepEmbedding(8)
    out = emb(torch.tensor([0, 1, 999]))
    assert out.shape == (3, 8) and out.dtype == torch.float32
    assert torch.equal(out[0], torch.tensor([0.0] * 4 + [1.0] * 4)), "t = 0: sines 0, cosines 1"
    assert out[1, 0] == pytest.approx(torch.sin(torch.tensor(1.0)).item()), "the first frequency is 1"
    assert out.abs().max() <= 1
    assert not torch.allclose(out[1], out[2])


def test_sinusoidal_embedding_odd_dimension_is_padded():
    out = SinusoidalTimestepEmbedding(7)(torch.arange(4))
    assert out.shape == (4, 7) and torch.all(out[:, -1] == 0)


@pytest.mark.parametrize("channels, size, blocks", [(1, 28, (16, 32, 32, 64)), (3, 32, (16, 32)), (1, 13, (8, 16))])
def test_reference_pads_sizes_the_unet_cannot_halve(channels, size, blocks):
    model = DiffusionModel(channels, size, block_out_channels=blocks, norm_num_groups=8)
    x = torch.randn(2, channels, size, size)
    assert model(x, torch.tensor([0, 999])).shape == x.shape
