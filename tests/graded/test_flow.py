"""Level 7: flow matching in src/flow.py: the training pair, the Euler sampler, and trained two-moons and Fashion-MNIST
runs."""

from contextlib import nullcontext

import pytest
import torch

from src.harness.loading import REFERENCE
from src.harness.policy import (FLOW_GAUSSIAN_STEPS, FLOW_PAIR_ATOL, GAUSSIAN_MOMENT_TOLERANCE,
                                SAMPLER_TRAJECTORY_ATOL, SAMPLER_X_T_ATOL)
from src.harness.run.config import official_config
from src.harness.run.data import load_data
from src.harness.run.objective import make_objective
from src.harness.run.points import evaluation_points, judge_points, point_quality
from src.harness.run.quality import judge
from src.harness.run.schedule import NoiseSchedule
from tests.graded.fakes import (GaussianDataVelocity, first_departure, flow_pair_inputs, four_step_timesteps,
                               trace_fast_sampler)
from tests.graded.recorded import Recording, trace_seed
from tests.graded.runs import assert_samples_pass, command, trained_model

pytestmark = pytest.mark.level7
SHAPES = {"images": (1, 4, 4), "points": (2,)}  # the sample shapes of flow_pair_inputs() that are recorded


def _reference_values(seed: int = 0) -> dict:
    """The reference's flow_matching_pair on flow_pair_inputs() of each of SHAPES, and its Euler sampler's trace."""
    flow = REFERENCE.module("flow")
    return {"pairs": {kind: flow.flow_matching_pair(*flow_pair_inputs(shape, seed)) for kind, shape in SHAPES.items()},
            "trace": trace_fast_sampler(flow.euler_sample, seed=seed)}


RECORDING = Recording("flow", _reference_values, seeded=True)


def _check_pair(flow_matching_pair, kind: str) -> None:
    x0, noise, t, T = flow_pair_inputs(SHAPES[kind], trace_seed())
    pair = flow_matching_pair(x0, noise, t, T)
    assert isinstance(pair, tuple) and len(pair) == 2, "return a tuple of two tensors: (x_s, v)"
    expected_x_s, expected_v = RECORDING.values()["pairs"][kind]
    for name, got in zip(("x_s", "v"), pair):
        assert tuple(got.shape) == tuple(x0.shape) and got.dtype == torch.float32, (
            f"{name} is {got.dtype} of shape {tuple(got.shape)} for x0 of shape {tuple(x0.shape)}: shape it like x0, "
            "float32 (reshape s to (B, 1, ...) so that it broadcasts over each sample)")
    x_s, v = pair
    for i in range(len(t)):
        assert torch.allclose(x_s[i], expected_x_s[i], atol=FLOW_PAIR_ATOL), (
            f"x_s differs from the reference's for t = {t[i]} (sample {i}): x_s = (1 - s) * x0 + s * noise, with "
            f"s = (t + 1) / T, so t = T-1 gives the noise itself and t = 0 nearly x0")
    assert torch.allclose(v, expected_v, atol=FLOW_PAIR_ATOL), (
        "x_s is right, the velocity is not: v = d x_s / d s = noise - x0 (it points from the data to the noise)")


@pytest.mark.points(3)
def test_pair_matches_the_reference_on_images(flow_matching_pair):
    _check_pair(flow_matching_pair, "images")


@pytest.mark.points(1)
def test_pair_matches_the_reference_on_points(flow_matching_pair):
    _check_pair(flow_matching_pair, "points")


@pytest.mark.points(4)
def test_euler_matches_the_reference_sampler_exactly(euler_sample):
    out, calls = trace_fast_sampler(euler_sample, seed=trace_seed())
    expected_out, expected_calls = RECORDING.values()["trace"]
    departure = first_departure(calls, expected_calls, SAMPLER_X_T_ATOL, SAMPLER_TRAJECTORY_ATOL)
    if departure is not None:
        i, t, expected_t, what = departure
        assert what != "t", (f"model call {i + 1}: you passed t = {t[0]}, the reference t = {expected_t[0]} "
                             "(t_i = round(T * s_i) - 1, one timestep per sample)")
        assert i > 0, ("the starting noise differs from the reference's: draw x = torch.randn(shape, "
                       "generator=generator, device=...) first, and no other random numbers")
        raise AssertionError(
            f"your x first differs from the reference's at model call {i + 1} (t = {t[0]}), i.e. after Euler "
            f"step {i}: x <- x - (1 / N) * v, a step of -1/N in s, from the noise towards the data")
    assert len(calls) == len(expected_calls), (
        f"your sampler called the model {len(calls)} times for num_steps = {len(expected_calls)}: once per step")
    assert torch.allclose(out, expected_out, atol=SAMPLER_TRAJECTORY_ATOL), (
        "every model input matched, but the returned x differs: take the last step to s = 0, then clip to [-1, 1]")


@pytest.mark.points(3)
def test_euler_reproduces_the_mean_and_variance_of_gaussian_data(euler_sample):
    """Independent of the random-number order: with the exact velocity, the samples follow the data distribution."""
    mean, std = 0.2, 0.3
    out = euler_sample(GaussianDataVelocity(1000, mean, std), NoiseSchedule(1000), (256, 1, 8, 8),
                       generator=torch.Generator().manual_seed(0), num_steps=FLOW_GAUSSIAN_STEPS)
    assert abs(out.mean().item() - mean) < GAUSSIAN_MOMENT_TOLERANCE, (
        f"sample mean {out.mean().item():.3f}, data mean {mean}: the samples do not arrive at the data; check the "
        "direction of the step (from s = 1 to s = 0) and its size, 1 / num_steps")
    assert abs(out.std().item() - std) < GAUSSIAN_MOMENT_TOLERANCE, (
        f"sample std {out.std().item():.3f}, data std {std}: check the step size (1 / num_steps) and that every "
        "step is taken")


class LinearVelocity(torch.nn.Module):
    """v(x, t) = x, whatever t: from x_T, N Euler steps x <- x - v / N land exactly on (1 - 1/N)^N x_T."""

    def __init__(self):
        super().__init__()
        self.starts = []  # the x of each call

    def forward(self, x, t):
        self.starts.append(x.clone())
        return x.clone()


@pytest.mark.points(2)
def test_euler_steps_on_a_linear_field(euler_sample):
    """Independent of the random-number order: on v = x the Euler answer is known in closed form."""
    num_steps, field = 4, LinearVelocity()
    out = euler_sample(field, NoiseSchedule(1000), (256, 2), generator=torch.Generator().manual_seed(0),
                       num_steps=num_steps)
    assert field.starts, "your sampler never called the model"
    x_T = field.starts[0]
    inside = out.abs() < 1  # where clipping left the samples alone
    factor = (out[inside] * x_T[inside]).sum() / (x_T[inside] ** 2).sum()
    expected = (1 - 1 / num_steps) ** num_steps
    if abs(factor - expected) < 1e-4:
        return
    known = {(1 - 1 / (num_steps - 1)) ** num_steps: "steps of 1 / (N - 1): the N steps must add up to 1",
             (1 - 1 / num_steps) ** (num_steps - 1): "one step fewer than N: take the last step too, down to s = 0",
             (1 + 1 / num_steps) ** num_steps: "steps towards the noise: x <- x - v / N goes from s = 1 to s = 0"}
    cause = next((why for value, why in known.items() if abs(factor - value) < 1e-3),
                 "N steps of size 1 / N, each x <- x - v / N")
    raise AssertionError(
        f"on the velocity field v = x with N = {num_steps} steps, your samples are {factor:.4f} x_T, Euler's are "
        f"(1 - 1/N)^N x_T = {expected:.4f} x_T: {cause}")


@pytest.mark.points(2)
def test_euler_calls_the_model_once_per_step_from_T_minus_1_down(euler_sample):
    timesteps = four_step_timesteps(euler_sample)
    assert timesteps == [999, 749, 499, 249], (
        f"with T = 1000 and 4 steps, t must run 999, 749, 499, 249 (s = 1, 3/4, 1/2, 1/4); yours: {timesteps}")


@pytest.mark.points(1)
def test_euler_returns_clipped_samples_without_autograd_history(euler_sample):
    pushes_out_of_range = lambda x, t: -3 * torch.ones_like(x)  # noqa: E731  (drives x far above 1)
    shape = (3, 2)
    out = euler_sample(pushes_out_of_range, NoiseSchedule(1000), shape, generator=torch.Generator().manual_seed(0),
                       num_steps=5)
    assert tuple(out.shape) == shape and out.dtype == torch.float32, f"returned {tuple(out.shape)}, asked {shape}"
    assert out.min() >= -1 and out.max() <= 1, "clip the final x to [-1, 1] (torch.clamp)"
    out, _ = trace_fast_sampler(euler_sample, num_steps=3)
    assert not out.requires_grad and out.grad_fn is None, (
        "the samples carry autograd history: decorate euler_sample with @torch.no_grad()")


@pytest.mark.points(4)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(600)
def test_moons_flow_samples_have_the_datas_shape(point_model_class, source):
    model, run_cfg = trained_model("moons_flow", point_model_class, source)
    data = load_data(official_config("moons_flow").data)
    samples = evaluation_points(model, make_objective(run_cfg.diffusion, source=source), nullcontext)
    reasons = judge_points(point_quality(samples, data.train, data.val), "moons")
    assert not reasons, "; ".join(reasons) + (
        " (check the pair with the tests above; the network is your Level 0 PointModel. Then rerun "
        f"`{command('moons_flow', source)} --overwrite`)")


@pytest.mark.points(4)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_fashion_mnist_flow_samples_are_recognisable(model_class, source):
    assert_samples_pass(judge, "fashion_mnist_flow", model_class, source,
                        hint="a correct src/flow.py (the pair and Euler tests above) and your Level 1 network")
