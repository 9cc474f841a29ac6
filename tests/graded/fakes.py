"""Fake models that the graded sampler tests drive a student's samplers with, and the fixed runs whose traces the
reference's are compared on.

Shared with the harness's own tests and tests/graded/record.py. Shipped to students with the graded tests
(tests/graded/), so it holds nothing of the reference.
"""

import torch

from src.harness.grade.fakes import GaussianDataDenoiser, gaussian_data_eps  # noqa: F401 (shared here)
from src.harness.run.schedule import NoiseSchedule


class RecordingModel(torch.nn.Module):
    """A fixed, cheap noise predictor that depends on x and t, and remembers every call."""

    def __init__(self, num_timesteps: int):
        super().__init__()
        self.num_timesteps = num_timesteps
        self.weight = torch.nn.Parameter(torch.tensor(0.5))  # requires grad: sampling must not track it
        self.calls = []  # (t as a list, a copy of x)

    def forward(self, x, t):
        self.calls.append((t.tolist(), x.detach().clone()))
        phase = (t.float() / self.num_timesteps).view(-1, 1, 1, 1)
        return self.weight * torch.tanh(x) * torch.cos(3 * phase) + 0.1 * phase


class ClassGaussianDenoiser(torch.nn.Module):
    """The exact eps-predictions of class-conditional Gaussian data: with label k, data N(means[k], std^2), pixel by
    pixel; with the null label len(means), N(null_mean, std^2)."""

    def __init__(self, schedule, means: list[float], null_mean: float, std: float):
        super().__init__()
        self.abar, self.means, self.std = schedule.alphas_cumprod, torch.tensor([*means, null_mean]), std

    def forward(self, x, t, y):
        return gaussian_data_eps(self.abar[t].view(-1, 1, 1, 1), x, self.means[y].view(-1, 1, 1, 1), self.std)


def trace_sampler(sampler, num_timesteps=50, shape=(4, 1, 6, 6), seed=0):
    """(x_0, model calls) of `sampler` on a fresh RecordingModel from a fixed seed. The reference sampler's, at the
    defaults, is recorded (test_ddpm.RECORDING)."""
    schedule = NoiseSchedule(num_timesteps)
    model = RecordingModel(num_timesteps)
    out = sampler(model, schedule, shape, generator=torch.Generator().manual_seed(seed))
    return out, model.calls


class GaussianDataVelocity(torch.nn.Module):
    """The exact flow-matching velocity for data x_0 ~ N(mean, std^2), pixel by pixel, in src/flow.py's convention.

    x_s = (1 - s) x_0 + s eps ~ N(m, var) with m = (1 - s) mean, var = (1 - s)^2 std^2 + s^2, and
    E[eps - x_0 | x_s] = (s - (1 - s) std^2) (x_s - m) / var - mean, at s = (t + 1) / T.
    """

    def __init__(self, num_timesteps: int, mean: float, std: float):
        super().__init__()
        self.num_timesteps, self.mean, self.std = num_timesteps, mean, std

    def forward(self, x, t):
        s = ((t.double() + 1) / self.num_timesteps).view(-1, *[1] * (x.dim() - 1))
        var = (1 - s) ** 2 * self.std ** 2 + s ** 2
        return ((s - (1 - s) * self.std ** 2) * (x - (1 - s) * self.mean) / var - self.mean).float()


def flow_pair_inputs(sample_shape=(1, 4, 4), seed=0):
    """(x0, noise, t, T) on which flow_matching_pair is compared with the reference's recording: five samples at
    t = 0, 1, T/2 - 1, T-2 and T-1."""
    g = torch.Generator().manual_seed(seed)
    x0 = torch.rand(5, *sample_shape, generator=g) * 2 - 1
    noise = torch.randn(5, *sample_shape, generator=g)
    T = 1000
    return x0, noise, torch.tensor([0, 1, T // 2 - 1, T - 2, T - 1]), T


def trace_fast_sampler(sampler, num_steps=20, shape=(4, 1, 6, 6), seed=0, num_timesteps=1000, **options):
    """(x returned, model calls) of a sampler that takes num_steps (Euler's, DDIM's with its `options`) on a fresh
    RecordingModel from a fixed seed. The reference's, at the defaults, are recorded (test_flow.RECORDING,
    test_ddim.RECORDING)."""
    model = RecordingModel(num_timesteps)
    out = sampler(model, NoiseSchedule(num_timesteps), shape, generator=torch.Generator().manual_seed(seed),
                  num_steps=num_steps, **options)
    return out, model.calls


class ConditionalRecordingModel(torch.nn.Module):
    """A fixed, cheap class-conditional noise predictor that depends on x, t and the label y, and remembers every call.

    Its labels are 0 .. num_classes - 1 and the null label num_classes."""

    def __init__(self, num_timesteps: int, num_classes: int = 3):
        super().__init__()
        self.num_timesteps, self.num_classes = num_timesteps, num_classes
        self.weight = torch.nn.Parameter(torch.tensor(0.5))  # requires grad: sampling must not track it
        self.calls = []  # (t as a list, y as a list, a copy of x)

    def forward(self, x, t, y):
        self.calls.append((t.tolist(), y.tolist(), x.detach().clone()))
        phase = (t.float() / self.num_timesteps).view(-1, 1, 1, 1)
        label = (y.float() / self.num_classes).view(-1, 1, 1, 1)  # 1 for the null label
        return self.weight * torch.tanh(x) * torch.cos(3 * phase) + 0.1 * phase + 0.4 * (label - 0.5) * (1 - phase)


GUIDED_LABELS = (0, 2, 1, 0)  # the classes trace_guided_sampler asks for, of ConditionalRecordingModel's three


def trace_guided_sampler(guided_sample, guidance_scale: float, num_steps=10, shape=(4, 1, 6, 6), seed=0,
                         num_timesteps=1000):
    """(x returned, model calls as (t, y, x)) of a guided sampler on a fresh ConditionalRecordingModel from a fixed
    seed, asked for GUIDED_LABELS. The reference's, at the defaults, are recorded (test_guidance.RECORDING)."""
    model = ConditionalRecordingModel(num_timesteps)
    labels = torch.tensor(GUIDED_LABELS[:shape[0]])
    out = guided_sample(model, NoiseSchedule(num_timesteps), shape, labels, model.num_classes,
                        guidance_scale=guidance_scale, generator=torch.Generator().manual_seed(seed),
                        num_steps=num_steps)
    return out, model.calls


def four_step_timesteps(sampler) -> list[int]:
    """The timestep of each model call of `sampler` with num_steps = 4 and T = 1000 (a batch of 3), after checking
    that it calls the model once per step with one timestep per sample."""
    batch = 3
    _, calls = trace_fast_sampler(sampler, num_steps=4, shape=(batch, 1, 4, 4))
    timesteps = [t for t, _ in calls]
    assert len(timesteps) == 4, f"the model was called {len(timesteps)} times for num_steps = 4: once per step"
    for t in timesteps:
        assert t == [t[0]] * batch, f"pass one timestep per sample: t must have shape (B,), got {t}"
    return [t[0] for t in timesteps]


def first_departure(calls: list, expected_calls: list, atol_first: float, atol: float):
    """(index, t, recorded t, "t" or "x") of the first model call where a sampler's `calls` leave the recorded ones,
    or None: t must be equal, x within atol_first at the first call (the same random draw) and atol after it."""
    for i, ((t, x), (expected_t, expected_x)) in enumerate(zip(calls, expected_calls)):
        if t != expected_t:
            return i, t, expected_t, "t"
        if not torch.allclose(x, expected_x, atol=atol_first if i == 0 else atol):
            return i, t, expected_t, "x"
    return None
