"""Samplers by name. Each entry builds, from the `sampling` config, a function
sample(model, schedule, shape, generator) -> x_0 in [-1, 1]."""

from functools import partial

import torch

from src.harness.loading import import_implementation


@torch.no_grad()
def ddim(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
         num_steps: int = 50) -> torch.Tensor:
    """Deterministic DDIM sampling (Song et al. 2021, eq. 12 with eta = 0) on `num_steps` evenly spaced timesteps."""
    device = schedule.betas.device
    abar = schedule.alphas_cumprod
    timesteps = torch.linspace(schedule.num_timesteps - 1, 0, min(num_steps, schedule.num_timesteps)).round().long()
    x = torch.randn(shape, generator=generator, device=device)
    for i, t in enumerate(timesteps.tolist()):
        eps = model(x, torch.full((shape[0],), t, dtype=torch.long, device=device)).float()
        x0 = ((x - (1 - abar[t]).sqrt() * eps) / abar[t].sqrt()).clamp(-1, 1)
        if i + 1 < len(timesteps):
            t_next = timesteps[i + 1]
            eps = (x - abar[t].sqrt() * x0) / (1 - abar[t]).sqrt()  # the noise consistent with the clipped x0
            x = abar[t_next].sqrt() * x0 + (1 - abar[t_next]).sqrt() * eps
    return x0


# The harness holds no level's answer: "ddpm" is the DDPM sampler under test (Level 4), the student's
# src/sampler.py, or with --solution the reference's. Loaded only when asked for.
SAMPLERS = {
    "ddpm": lambda cfg, solution=False: import_implementation("sampler", solution).sample,  # T model calls
    "ddim": lambda cfg, solution=False: partial(ddim, num_steps=cfg.steps),  # cfg.steps model calls
}


def get_sampler(sampling_cfg, custom: bool = False, solution: bool = False):
    """The sampler `sampling_cfg.sampler`, or with custom=True the student's src/sampler.py (DDPM).

    `sampling.sampler=ddpm` is the DDPM sampler under test as well: src/sampler.py, or src/solution/'s with
    solution=True (and without custom).
    """
    if custom:
        return import_implementation("sampler").sample
    return SAMPLERS[sampling_cfg.sampler](sampling_cfg, solution)
