"""Noise schedule invariants and q_sample statistics."""

import pytest
import torch

from src.harness.run.schedule import NoiseSchedule


@pytest.mark.parametrize("kind", ["linear", "cosine"])
def test_alpha_bar_decreases_from_one_towards_zero(kind):
    s = NoiseSchedule(1000, kind)
    abar = s.alphas_cumprod
    assert s.betas.shape == s.alphas.shape == abar.shape == (1000,)
    assert torch.all(abar[1:] < abar[:-1]), "alpha_bar must strictly decrease"
    assert abar[0] > 0.99 and abar[-1] < 1e-3
    assert torch.allclose(s.alphas, 1 - s.betas)
    assert torch.all((s.betas > 0) & (s.betas < 1))


def test_linear_betas_match_ho_et_al():
    s = NoiseSchedule(1000, "linear", 1e-4, 0.02)
    assert s.betas[0].item() == pytest.approx(1e-4) and s.betas[-1].item() == pytest.approx(0.02)


@pytest.mark.parametrize("t", [0, 250, 999])
def test_q_sample_has_the_forward_process_statistics(t):
    s = NoiseSchedule(1000, "linear")
    g = torch.Generator().manual_seed(0)
    x0 = torch.full((20000, 1, 1, 1), 0.7)
    tt = torch.full((20000,), t)
    xt = s.q_sample(x0, tt, torch.randn(x0.shape, generator=g))
    abar = s.alphas_cumprod[t].item()
    assert xt.mean().item() == pytest.approx(abar ** 0.5 * 0.7, abs=0.03)
    assert xt.var().item() == pytest.approx(1 - abar, abs=0.03)
