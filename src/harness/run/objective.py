"""Training objectives: what the network is asked to predict, the loss that teaches it, and its validation score.

An objective draws the random inputs of a training step, turns a clean batch into the network's input and
target, and names the harness's fast sampler for it. The loss, the validation score and the training loop are
the same for every objective, so flow matching is a sibling class of DDPM's, not a branch in the loop.
"""

from contextlib import nullcontext

import torch
import torch.nn.functional as F

from src.harness.loading import STUDENT, CodeSource, check_prediction
from src.harness.run.conditioning import with_labels
from src.harness.run.samplers import dpmpp_2m, heun, heun_steps
from src.harness.run.schedule import NoiseSchedule


def predict(model, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """model(x, t), checked to be a tensor shaped like x, so a wrong return value is named, not a crash later."""
    prediction = model(x, t)
    check_prediction(prediction, x)
    return prediction


class Objective:
    """A network input and a regression target per (clean sample, timestep, noise); MSE between target and output.

    Subclasses define `pair(x0, t, noise) -> (input, target)` and `fast_sampler(model, shape, generator,
    num_steps)`, the harness's deterministic sampler for previews and sample scores, in about num_steps model calls,
    and the facts of the objective that the config, the loader and the CLI ask for (class attributes below).
    """

    name: str  # its value of diffusion.objective
    samplers: tuple[str, ...]  # the names (samplers.SAMPLERS) of the samplers that fit it; the first is the student's
    student_sampler: str  # where that student sampler is, as a run's output names it
    code: tuple[str, ...] = ()  # the student files (levels.STUDENT_FILES) it trains with, besides the network
    conditional: bool = True  # whether a class-conditional run (conditioning.kind=class, Level 6) may use it

    def __init__(self, schedule: NoiseSchedule, source: CodeSource = STUDENT):
        self.schedule = schedule

    def draw(self, x0: torch.Tensor, generator: torch.Generator | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(t, noise) for the batch x0: (B, C, H, W) or (B, 2); t: (B,) uniform in [0, T), drawn before the noise."""
        t = torch.randint(0, self.schedule.num_timesteps, (len(x0),), generator=generator, device=x0.device)
        return t, torch.randn(x0.shape, generator=generator, device=x0.device)

    def noised(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """The network's input for clean samples x0 at timesteps t: (B, ...) like x0."""
        return self.pair(x0, t, noise)[0]

    def loss(self, model, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """|| target - network(input, t) ||^2, averaged over pixels and batch."""
        network_input, target = self.pair(x0, t, noise)
        return F.mse_loss(predict(model, network_input, t).float(), target.float())

    @torch.no_grad()
    def validation_loss(self, model, images: torch.Tensor, batch_size: int = 500, num_bands: int = 10,
                        autocast=nullcontext, labels: torch.Tensor | None = None) -> dict:
        """Deterministic MSE on held-out samples, overall and per timestep band.

        Sample i is noised at t_i = floor(i * T / N), so the timesteps cover [0, T) evenly, with noise drawn
        from a generator seeded 0; two models scored on the same samples see exactly the same inputs.
        `autocast` makes the context each forward pass runs in (e.g. bfloat16 autocast).
        images: (N, C, H, W) in [-1, 1] (or points (N, 2)); labels: their (N,) classes for a class-conditional
        model (Level 6), called as model(x, t, y).  Returns {"loss": float, "bands": {"0-99": float, ...}}.
        """
        n, T = len(images), self.schedule.num_timesteps
        device = self.schedule.betas.device
        timesteps = torch.arange(n, dtype=torch.float64).mul(T / n).floor().long()
        noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(0))
        was_training = model.training
        model.eval()
        per_image = []
        for start in range(0, n, batch_size):
            t = timesteps[start:start + batch_size].to(device)
            network_input, target = self.pair(images[start:start + batch_size].to(device), t,
                                              noise[start:start + batch_size].to(device))
            network = model if labels is None else with_labels(model, labels[start:start + batch_size].to(device))
            with autocast():
                prediction = predict(network, network_input, t)
            per_image.append((prediction.float() - target.float()).pow(2).flatten(1).mean(dim=1).cpu())
        model.train(was_training)
        per_image = torch.cat(per_image).double()
        return {"loss": per_image.mean().item(), "bands": _band_means(per_image, timesteps, T, min(num_bands, T))}


class NoisePrediction(Objective):
    """DDPM's objective (Ho et al. 2020, Algorithm 1): the network predicts the noise eps mixed into x_0 at step t,
    L_simple = || eps - eps_theta(x_t, t) ||^2 (eq. 14)."""

    name, samplers, student_sampler = "noise", ("ddpm", "ddim", "dpmpp_2m"), "src/sampler.py"

    def pair(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.schedule.q_sample(x0, t, noise), noise

    def fast_sampler(self, model, shape: tuple[int, ...], generator: torch.Generator | None, num_steps: int):
        return dpmpp_2m(model, self.schedule, shape, generator, num_steps=num_steps)


class FlowMatching(Objective):
    """Flow matching (Lipman et al. 2023): the network predicts the velocity from noise to data along a straight
    line. The line and the velocity come from `source`: src/flow.py (Level 7), or the reference's with --solution."""

    name, samplers, student_sampler = "flow", ("euler", "heun"), "src/flow.py's euler_sample"
    code = ("flow",)
    conditional = False  # the guided sampler of Level 6 takes DDIM's steps

    def __init__(self, schedule: NoiseSchedule, source: CodeSource = STUDENT):
        super().__init__(schedule, source)
        self.flow_matching_pair = source.module("flow").flow_matching_pair

    def pair(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.flow_matching_pair(x0, noise, t, self.schedule.num_timesteps)

    def fast_sampler(self, model, shape: tuple[int, ...], generator: torch.Generator | None, num_steps: int):
        return heun(model, self.schedule, shape, generator, num_steps=heun_steps(num_steps))


OBJECTIVES = {objective.name: objective for objective in (NoisePrediction, FlowMatching)}


def make_objective(diffusion_cfg, device="cpu", source: CodeSource = STUDENT) -> Objective:
    """The objective `diffusion.objective` names, on `device`; flow matching uses src/flow.py (or the reference's)."""
    return OBJECTIVES[diffusion_cfg.objective](NoiseSchedule.from_config(diffusion_cfg, device), source)


def _band_means(per_image: torch.Tensor, timesteps: torch.Tensor, T: int, num_bands: int) -> dict[str, float]:
    """{"lo-hi": mean of per_image over the images noised at a timestep in [lo, hi]} for num_bands equal bands."""
    band_of = timesteps * num_bands // T
    bands = {}
    for b in range(num_bands):
        in_band = band_of == b
        if in_band.any():
            lo, hi = b * T // num_bands, (b + 1) * T // num_bands - 1
            bands[f"{lo}-{hi}"] = per_image[in_band].mean().item()
    return bands
