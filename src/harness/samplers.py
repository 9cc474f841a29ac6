"""Samplers by name. Each entry builds, from the `sampling` config, a function
sample(model, schedule, shape, generator) -> x_0 in [-1, 1]; OBJECTIVE_SAMPLERS says which fit which objective."""

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


@torch.no_grad()
def heun(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
         num_steps: int = 25) -> torch.Tensor:
    """Heun's second-order method (Karras et al. 2022, Algorithm 1) on a flow-matching model's ODE, from s = 1 to 0.

    The velocity model is called as model(x, t) with t = T * s - 1 (src/flow.py's convention) at s = 1, 1 - 1/N, ...;
    every step but the last, to s = 0, corrects its Euler estimate with the velocity at the step's end:
    2 * num_steps - 1 model calls.
    """
    device = schedule.betas.device
    T = schedule.num_timesteps

    def velocity(x, i):
        return model(x, torch.full((shape[0],), round(T * (num_steps - i) / num_steps) - 1, device=device)).float()

    x = torch.randn(shape, generator=generator, device=device)
    for i in range(num_steps):
        d = velocity(x, i)
        x_next = x - d / num_steps
        if i + 1 < num_steps:
            x_next = x - (d + velocity(x_next, i + 1)) / (2 * num_steps)
        x = x_next
    return x.clamp(-1, 1)


def heun_steps(model_calls: int) -> int:
    """Heun's steps that take about `model_calls` model calls (2 * steps - 1)."""
    return (model_calls + 1) // 2


# The harness holds no level's answer: "ddpm" is the DDPM sampler under test (Level 4), "euler" the flow sampler
# under test (Level 7): the student's src/sampler.py and src/flow.py, or with --solution the reference's. Loaded
# only when asked for.
SAMPLERS = {
    "ddpm": lambda cfg, solution=False: import_implementation("sampler", solution).sample,  # T model calls
    "ddim": lambda cfg, solution=False: partial(ddim, num_steps=cfg.steps),  # cfg.steps model calls
    "euler": lambda cfg, solution=False: partial(import_implementation("flow", solution).euler_sample,
                                                 num_steps=cfg.steps),  # cfg.steps model calls
    "heun": lambda cfg, solution=False: partial(heun, num_steps=heun_steps(cfg.steps)),  # about cfg.steps calls
}
# diffusion.objective -> the samplers for it, the first being the one --custom-sampler replaces with the student's.
OBJECTIVE_SAMPLERS = {"noise": ("ddpm", "ddim"), "flow": ("euler", "heun")}


def get_sampler(sampling_cfg, objective: str = "noise", custom: bool = False, solution: bool = False):
    """The sampler `sampling_cfg.sampler`, or with custom=True the student's for `objective`: src/sampler.py (DDPM)
    or src/flow.py's euler_sample.

    `sampling.sampler=ddpm` (or `euler`) is the sampler under test as well: the student's, or src/solution/'s with
    solution=True (and without custom).
    """
    if custom:
        return SAMPLERS[OBJECTIVE_SAMPLERS[objective][0]](sampling_cfg, solution=False)
    return SAMPLERS[sampling_cfg.sampler](sampling_cfg, solution)
