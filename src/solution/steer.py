"""Reference steered sampler, with exactly the contract of src/steer.py."""

import torch


def steered_sample(model, schedule, shape: tuple[int, ...], goal, scale: float = 1.0,
                   generator: torch.Generator | None = None, num_steps: int = 50) -> torch.Tensor:
    """Deterministic DDIM steps (Song et al. 2021, eq. 12) whose score is shifted by scale times the gradient of
    goal(x0_hat) with respect to x_t (Dhariwal & Nichol 2021, Algorithm 2; x0_hat as in Chung et al. 2023)."""
    device = schedule.betas.device
    timesteps = torch.linspace(schedule.num_timesteps - 1, 0, num_steps).round().long().tolist()
    one = torch.ones((), device=device)
    x = torch.randn(shape, generator=generator, device=device)
    for i, t in enumerate(timesteps):
        abar = schedule.alphas_cumprod[t]
        abar_next = schedule.alphas_cumprod[timesteps[i + 1]] if i + 1 < len(timesteps) else one
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).float()
            x0 = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
            grad, = torch.autograd.grad(goal(x0).sum(), x)
        x = x.detach()
        # eps = -sqrt(1 - abar) * score: adding scale * grad to the score takes sqrt(1 - abar) * scale * grad from eps
        eps = eps.detach() - scale * (1 - abar).sqrt() * grad
        x0 = ((x - (1 - abar).sqrt() * eps) / abar.sqrt()).clamp(-1, 1)
        eps = (x - abar.sqrt() * x0) / (1 - abar).sqrt()  # consistent with the clipped x0
        x = abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * eps  # eq. 12 with sigma = 0
    return x.clamp(-1, 1)
