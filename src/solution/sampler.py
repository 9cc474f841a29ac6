"""Reference DDPM, DDIM and guided samplers, with exactly the contracts of src/sampler.py."""

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


@torch.no_grad()
def ddim_sample(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
                num_steps: int = 50, eta: float = 0.0) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) on num_steps evenly spaced timesteps; eta = 0 is deterministic."""
    device = schedule.betas.device
    timesteps = torch.linspace(schedule.num_timesteps - 1, 0, num_steps).round().long().tolist()
    one = torch.ones((), device=device)
    x = torch.randn(shape, generator=generator, device=device)
    for i, t in enumerate(timesteps):
        abar = schedule.alphas_cumprod[t]
        abar_next = schedule.alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else one
        eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).float()
        x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
        sigma = eta * ((1 - abar_next) / (1 - abar)).sqrt() * (1 - abar / abar_next).sqrt()  # eq. 16
        x = abar_next.sqrt() * x0 + (1 - abar_next - sigma ** 2).sqrt() * eps  # eq. 12
        if eta > 0 and i + 1 < len(timesteps):
            x = x + sigma * torch.randn(shape, generator=generator, device=device)
    return x.clamp(-1, 1)


@torch.no_grad()
def guided_sample(model, schedule, shape: tuple[int, ...], labels: torch.Tensor, null_label: int,
                  guidance_scale: float = 3.0, generator: torch.Generator | None = None,
                  num_steps: int = 50) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022, eq. 6) on deterministic DDIM steps, clipping x0_hat and the
    noise it implies together."""
    device = schedule.betas.device
    timesteps = torch.linspace(schedule.num_timesteps - 1, 0, num_steps).round().long().tolist()
    null = torch.full_like(labels, null_label)
    one = torch.ones((), device=device)
    x = torch.randn(shape, generator=generator, device=device)
    for i, t in enumerate(timesteps):
        abar = schedule.alphas_cumprod[t]
        abar_next = schedule.alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else one
        step = torch.full((shape[0],), t, dtype=torch.long, device=device)
        eps_cond, eps_uncond = model(x, step, labels).float(), model(x, step, null).float()
        eps = eps_uncond + guidance_scale * (eps_cond - eps_uncond)  # Ho & Salimans, eq. 6, with their 1 + w as w
        x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # consistent with the clipped x0
        x = abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps  # eq. 12 with sigma = 0
    return x.clamp(-1, 1)
