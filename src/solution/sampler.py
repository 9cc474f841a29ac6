"""Reference DDPM sampler, with exactly the contract of src/sampler.py."""

import torch


@torch.no_grad()
def sample(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) with sigma_t^2 = beta_t."""
    device = schedule.betas.device
    betas, alphas, alphas_cumprod = schedule.betas, schedule.alphas, schedule.alphas_cumprod
    x = torch.randn(shape, generator=generator, device=device)
    for t in reversed(range(schedule.num_timesteps)):
        eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).float()
        # Algorithm 2, line 4: the mean of p(x_{t-1} | x_t).
        x = (x - betas[t] / (1 - alphas_cumprod[t]).sqrt() * eps) / alphas[t].sqrt()
        if t > 0:
            x = x + betas[t].sqrt() * torch.randn(shape, generator=generator, device=device)
    return x.clamp(-1, 1)
