"""Your DDPM sampler. This is Level 4 of the kata (see the README's "Levels").

Ho et al. 2020, Algorithm 2, with sigma_t^2 = beta_t:

    x_T ~ N(0, I)
    for t = T-1, ..., 0:
        z ~ N(0, I) if t > 0, else z = 0
        x_{t-1} = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_theta(x_t, t)) + sigma_t * z
    return x_0

(The paper counts t = T..1; arrays here are indexed 0..T-1, so step t uses betas[t].)
"""

import torch


@torch.no_grad()
def sample(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None) -> torch.Tensor:
    """DDPM ancestral sampling (Ho et al. 2020, Algorithm 2) with sigma_t^2 = beta_t.

    Args:
        model: eps_theta, called as model(x_t, t) with x_t: (B, C, H, W) and t: (B,) int64.
        schedule: the noise schedule: `num_timesteps` (T) and 1-D float tensors of length T:
            `betas`, `alphas` (1 - betas) and `alphas_cumprod` (alpha_bar).
        shape: (B, C, H, W) of the images to draw.
        generator: a torch.Generator on the schedule's device, or None for the global one.

    Random numbers, in this exact order (so two correct samplers agree bit for bit):
        1. x_T = torch.randn(shape, generator=generator, device=device)
        2. at each t = T-1, ..., 0: call the model once, then, only when t > 0,
           z = torch.randn(shape, generator=generator, device=device).
    Every tensor lives on device = schedule.betas.device.

    Returns:
        x_0: (B, C, H, W), clipped to [-1, 1], without autograd history.
    """
    # TODO: Level 4
    raise NotImplementedError(
        "Implement DDPM sampling (Algorithm 2) in src/sampler.py (README: 'Level 4: your own sampler')."
    )
