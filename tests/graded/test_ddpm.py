"""Level 4: your DDPM sampler in src/sampler.py (Ho et al. 2020, Algorithm 2, sigma_t^2 = beta_t)."""

import pytest
import torch

from src.harness.loading import REFERENCE
from src.harness.policy import GAUSSIAN_MOMENT_TOLERANCE, SAMPLER_TRAJECTORY_ATOL, SAMPLER_X_T_ATOL
from src.harness.run.schedule import NoiseSchedule
from tests.graded.fakes import GaussianDataDenoiser, first_departure, trace_sampler
from tests.graded.recorded import Recording, trace_seed

pytestmark = pytest.mark.level4
# The reference sampler's trace_sampler(): its x_0 and every model call.
RECORDING = Recording("ddpm", lambda seed=0: {"trace": trace_sampler(REFERENCE.module("sampler").sample, seed=seed)},
                      seeded=True)


@pytest.mark.points(4)
def test_matches_the_reference_sampler_exactly(sample):
    out, calls = trace_sampler(sample, seed=trace_seed())
    expected_out, expected_calls = RECORDING.values()["trace"]
    departure = first_departure(calls, expected_calls, SAMPLER_X_T_ATOL, SAMPLER_TRAJECTORY_ATOL)
    if departure is not None:
        i, t, expected_t, what = departure
        assert what != "t", f"model call {i + 1}: you passed t = {t[0]}, the reference t = {expected_t[0]}"
        assert i > 0, ("x_T differs from the reference: draw x_T = torch.randn(shape, generator=generator, "
                       "device=...) first, before anything else")
        raise AssertionError(
            f"your x_t first differs from the reference's at t = {t[0]} (model call {i + 1}), i.e. after "
            f"your update for t = {t[0] + 1}. Check that update (Algorithm 2, line 4) and that z is drawn "
            "after the model call and only when t > 0")
    assert len(calls) == len(expected_calls), (
        f"your sampler called the model {len(calls)} times, the reference {len(expected_calls)} (once per t)")
    assert torch.allclose(out, expected_out, atol=SAMPLER_TRAJECTORY_ATOL), (
        "every x_t matched, but the returned x_0 differs: the last step (t = 0) adds no noise, then clip to [-1, 1]")


@pytest.mark.points(4)
def test_reproduces_the_mean_and_variance_of_gaussian_data(sample):
    """Independent of the random-number order: with the exact denoiser, samples follow the data distribution."""
    schedule = NoiseSchedule(1000)
    mean, std = 0.2, 0.3
    out = sample(GaussianDataDenoiser(schedule, mean, std), schedule, (256, 1, 8, 8),
                 generator=torch.Generator().manual_seed(0))
    assert abs(out.mean().item() - mean) < GAUSSIAN_MOMENT_TOLERANCE, (
        f"sample mean {out.mean().item():.3f}, data mean {mean}: the denoising update (Algorithm 2, line 4) is off")
    assert abs(out.std().item() - std) < GAUSSIAN_MOMENT_TOLERANCE, (
        f"sample std {out.std().item():.3f}, data std {std}: check sigma_t = sqrt(beta_t) and the sqrt terms")


@pytest.mark.points(1)
def test_output_shape_range_and_device(sample):
    schedule = NoiseSchedule(20)
    shape = (3, 2, 5, 5)
    pushes_out_of_range = lambda x, t: -3 * torch.ones_like(x)  # noqa: E731  (drives x_0 far above 1)
    out = sample(pushes_out_of_range, schedule, shape, generator=torch.Generator().manual_seed(0))
    assert tuple(out.shape) == shape, f"returned shape {tuple(out.shape)}, asked for {shape}"
    assert out.device == schedule.betas.device and out.dtype == torch.float32
    assert out.min() >= -1 and out.max() <= 1, "clip the final x_0 to [-1, 1] (torch.clamp)"


@pytest.mark.points(1)
def test_returns_no_autograd_history(sample):
    out, _ = trace_sampler(sample, num_timesteps=5)
    assert not out.requires_grad and out.grad_fn is None, (
        "the samples carry autograd history: decorate sample with @torch.no_grad() (it also saves memory)")


@pytest.mark.points(2)
def test_calls_the_model_once_per_step_from_T_minus_1_down_to_0(sample):
    T, batch = 30, 4
    _, calls = trace_sampler(sample, num_timesteps=T, shape=(batch, 1, 4, 4))
    timesteps = [t for t, _ in calls]
    assert len(timesteps) == T, f"the model was called {len(timesteps)} times; call it once for each of T = {T} steps"
    for t in timesteps:
        assert t == [t[0]] * batch, f"pass one timestep per image: t must have shape (B,), got {t}"
    assert [t[0] for t in timesteps] == list(range(T - 1, -1, -1)), (
        f"timesteps must run T-1, T-2, ..., 0; yours began {[t[0] for t in timesteps[:4]]}")
