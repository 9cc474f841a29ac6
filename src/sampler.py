"""Your samplers: DDPM's (Level 4), DDIM's (Level 5) and the guided one (Level 6); their chapters are in docs/levels/.

Level 4 is Ho et al. 2020, Algorithm 2, with sigma_t^2 = beta_t:

    x_T ~ N(0, I)
    for t = T-1, ..., 0:
        z ~ N(0, I) if t > 0, else z = 0
        x_{t-1} = 1 / sqrt(alpha_t) * (x_t - beta_t / sqrt(1 - alpha_bar_t) * eps_theta(x_t, t)) + sigma_t * z
    return x_0

(The paper counts t = T..1; arrays here are indexed 0..T-1, so step t uses betas[t].) Level 5, DDIM, reuses
the same trained model and skips most timesteps: see `ddim_sample` below. Level 6 steers DDIM towards a class
with classifier-free guidance: see `guided_sample`.
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
        "Implement DDPM sampling (Algorithm 2) in src/sampler.py (Level 4: docs/levels/level4.md)."
    )


@torch.no_grad()
def ddim_sample(model, schedule, shape: tuple[int, ...], generator: torch.Generator | None = None,
                num_steps: int = 50, eta: float = 0.0) -> torch.Tensor:
    """DDIM sampling (Song et al. 2021, eq. 12) on num_steps of the T timesteps; eta = 0 is deterministic.

    The timesteps, N = num_steps of them, evenly spaced from T-1 down to 0:
        tau = torch.linspace(T - 1, 0, N).round().long()      # e.g. T = 1000, N = 4: 999, 666, 333, 0
    At step i = 0, ..., N-1, with abar = alphas_cumprod[tau_i] and abar_next = alphas_cumprod[tau_{i+1}]
    (abar_next = 1 at the last step, i = N-1):
        eps    = eps_theta(x, tau_i)
        x0_hat = clip((x - sqrt(1 - abar) * eps) / sqrt(abar), -1, 1)         # the predicted clean image
        sigma  = eta * sqrt((1 - abar_next) / (1 - abar)) * sqrt(1 - abar / abar_next)       # eq. 16
        x      = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next - sigma^2) * eps + sigma * z  # eq. 12
    so the last step returns x0_hat. eta = 1 makes each step as random as a DDPM step over the same gap.

    Args:
        model, schedule, shape, generator: as for `sample` above.
        num_steps: N, the number of model calls.
        eta: how much fresh noise each step adds, from 0 (deterministic) to 1.

    Random numbers, in this exact order (so two correct samplers agree bit for bit):
        1. x = torch.randn(shape, generator=generator, device=device)
        2. at each step i: call the model once, then, only when eta > 0 and i < N-1,
           z = torch.randn(shape, generator=generator, device=device).

    Returns:
        x_0: (B, C, H, W), clipped to [-1, 1], without autograd history.
    """
    # TODO: Level 5
    raise NotImplementedError(
        "Implement DDIM sampling (eq. 12) in src/sampler.py (Level 5: docs/levels/level5.md)."
    )


@torch.no_grad()
def guided_sample(model, schedule, shape: tuple[int, ...], labels: torch.Tensor, null_label: int,
                  guidance_scale: float = 3.0, generator: torch.Generator | None = None,
                  num_steps: int = 50) -> torch.Tensor:
    """Classifier-free guidance (Ho & Salimans 2022) on deterministic DDIM steps (Song et al. 2021, eq. 12).

    A class-conditional model predicts the noise with a label, eps_theta(x, t, y), and without one, with the null
    label: eps_theta(x, t, null). Guidance extrapolates from the second towards the first (their eq. 6, whose
    1 + w is w here):
        eps = eps_uncond + w * (eps_cond - eps_uncond)
    so w = 0 is the unconditional model, w = 1 the conditional one, and w > 1 pushes each sample further
    towards its class. At each of ddim_sample's steps i = 0, ..., N-1, on its timesteps tau_i, with abar and
    abar_next as there:
        eps_cond   = model(x, tau_i, labels)                  # first call
        eps_uncond = model(x, tau_i, null)                    # second call; null = a (B,) tensor of null_label
        eps        = eps_uncond + w * (eps_cond - eps_uncond)
        x0_hat     = clip((x - sqrt(1 - abar) * eps) / sqrt(abar), -1, 1)
        eps_hat    = (x - sqrt(abar) * x0_hat) / sqrt(1 - abar)          # the noise that the clipped x0_hat implies
        x          = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next) * eps_hat
    so the last step returns x0_hat. Unlike ddim_sample, the step uses eps_hat, not eps: guidance pushes x0_hat
    far out of [-1, 1], and a step that clips x0_hat but keeps eps no longer agrees with itself (grey samples).

    Args:
        model: eps_theta, called as model(x, t, y) with x: (B, C, H, W), t: (B,) int64 and y: (B,) int64.
        schedule, shape, generator, num_steps: as for `ddim_sample` above.
        labels: (B,) int64 classes in [0, K), one per image to draw, on the schedule's device.
        null_label: K, the label that means "no class".
        guidance_scale: w >= 0.

    Random numbers: exactly one draw, first: x = torch.randn(shape, generator=generator, device=device); two model
    calls per step, the conditional one first (two calls, not one on a doubled batch).

    Returns:
        x_0: (B, C, H, W), clipped to [-1, 1], without autograd history.
    """
    # TODO: Level 6
    raise NotImplementedError(
        "Implement guided_sample in src/sampler.py (Level 6: docs/levels/level6.md)."
    )
