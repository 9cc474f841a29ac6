"""A correct Level 4 answer written for the release tests (instructor-only: tests/harness/ is not released)."""

import torch


@torch.no_grad()
def sample(model, schedule, shape, generator=None):
    device = schedule.betas.device
    x = torch.randn(shape, generator=generator, device=device)
    for step in range(schedule.num_timesteps - 1, -1, -1):
        t = torch.full((shape[0],), step, dtype=torch.long, device=device)
        beta, alpha, abar = schedule.betas[step], schedule.alphas[step], schedule.alphas_cumprod[step]
        predicted = model(x, t).float()
        mean = (x - predicted * beta / torch.sqrt(1 - abar)) / torch.sqrt(alpha)
        if step == 0:
            x = mean
        else:
            x = mean + torch.sqrt(beta) * torch.randn(shape, generator=generator, device=device)
    return torch.clamp(x, -1.0, 1.0)
