"""Level 9's measures of a steered sampler. A steered sampler takes the goal's gradient through the model, which a
model or goal called back in the grading process could not pass on: so each measure here runs where the sampler
lives (sandbox.where_it_lives), builds its fake model and goal beside it, and returns plain tensors and numbers,
which the graded tests (tests/graded/test_steer.py) judge."""

import torch

from src.harness.grade.fakes import GaussianDataDenoiser
from src.harness.grade.sandbox import where_it_lives
from src.harness.run import steering
from src.harness.run.schedule import NoiseSchedule

T = 1000  # the fakes' timesteps


class SteeringProbeModel(torch.nn.Module):
    """A fixed, cheap noise predictor, smooth in x (so a gradient through it differs from one that skips it), that
    remembers every call: (t as a list, a copy of x, whether x was a fresh leaf that requires grad)."""

    def __init__(self):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.tensor(0.5))
        self.calls = []

    def forward(self, x, t):
        self.calls.append((t.tolist(), x.detach().clone(), bool(x.requires_grad and x.grad_fn is None)))
        phase = (t.float() / T).view(-1, 1, 1, 1)
        return self.weight * torch.tanh(x) * torch.cos(3 * phase) + 0.1 * phase


def trace_goal(x0: torch.Tensor) -> torch.Tensor:
    """A smooth goal, one value per image (B,): near a fixed pattern, with a wrinkle that a linear goal lacks."""
    pattern = torch.linspace(-0.8, 0.8, x0[0].numel(), device=x0.device).view(x0.shape[1:])
    return -((x0 - pattern) ** 2).flatten(1).sum(1) + 0.5 * torch.sin(3 * x0).flatten(1).mean(1)


@where_it_lives
def steering_trace(steered_sample, scale: float, seed: int = 0, num_steps: int = 10,
                   shape: tuple[int, ...] = (4, 1, 6, 6), grad_enabled: bool = True) -> dict:
    """steered_sample on a fresh SteeringProbeModel towards trace_goal from a fixed seed: {"out": x returned,
    "t": each call's timesteps, "x": each call's x, "fresh_leaf": whether each call's x was a fresh leaf,
    "out_requires_grad": whether x returned carries autograd history}. grad_enabled=False calls it under
    torch.no_grad()."""
    model = SteeringProbeModel()
    with torch.set_grad_enabled(grad_enabled):
        out = steered_sample(model, NoiseSchedule(T), shape, trace_goal, scale=scale,
                             generator=torch.Generator().manual_seed(seed), num_steps=num_steps)
    return {"out": out.detach().clone(), "t": [t for t, _, _ in model.calls], "x": [x for _, x, _ in model.calls],
            "fresh_leaf": [leaf for _, _, leaf in model.calls],
            "out_requires_grad": bool(out.requires_grad or out.grad_fn is not None)}


def tilt(shape: tuple[int, ...]) -> torch.Tensor:
    """c of the linear goal c . x0: +1 on the left half of each image, -1 on the right half. (1, C, H, W)."""
    c = torch.ones(1, *shape[1:])
    c[..., shape[-1] // 2:] = -1
    return c


@where_it_lives
def gaussian_tilted(steered_sample, scale: float, mean: float, std: float, num_steps: int,
                    shape: tuple[int, ...] = (256, 1, 8, 8), only_first: bool = False) -> torch.Tensor:
    """Samples (B, C, H, W) of steered_sample with the exact denoiser of Gaussian data N(mean, std^2) towards the
    linear goal tilt . x0 (only_first: a goal of the first image alone), from seed 0."""
    schedule = NoiseSchedule(T)
    c = tilt(shape)
    weight = torch.zeros(shape[0]).index_fill_(0, torch.tensor([0]), 1.0) if only_first else torch.ones(shape[0])

    def goal(x0):
        return weight * (c * x0).flatten(1).sum(1)

    out = steered_sample(GaussianDataDenoiser(schedule, mean, std), schedule, shape, goal, scale=scale,
                         generator=torch.Generator().manual_seed(0), num_steps=num_steps)
    return out.detach().clone()


inpainted = where_it_lives(steering.inpainted)
class_steered = where_it_lives(steering.class_steered)
