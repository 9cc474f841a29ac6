"""Level 5: the DDIM sampler in src/sampler.py: its exact steps, Gaussian data, and samples of the two moons."""

import pytest
import torch

from src.harness.data import load_data
from src.harness.paths import official_config
from src.harness.points import judge_points, point_quality
from src.harness.policy import (DDIM_GAUSSIAN_STEPS, DDIM_STOCHASTIC_GAUSSIAN_STEPS, EVAL_STEPS,
                                GAUSSIAN_MOMENT_TOLERANCE, POINT_EVAL_SAMPLES, SAMPLER_TRAJECTORY_ATOL,
                                SAMPLER_X_T_ATOL)
from src.harness.schedule import NoiseSchedule
from tests.graded.fakes import GaussianDataDenoiser, first_departure, four_step_timesteps, trace_fast_sampler
from tests.graded.recorded import ddim_trace
from tests.graded.runs import command, trained_model

pytestmark = pytest.mark.level5


def _check_trace(ddim_sample, eta: float) -> None:
    out, calls = trace_fast_sampler(ddim_sample, eta=eta)
    expected_out, expected_calls = ddim_trace(eta)  # the reference's trace_fast_sampler(ddim_sample, eta=eta)
    departure = first_departure(calls, expected_calls, SAMPLER_X_T_ATOL, SAMPLER_TRAJECTORY_ATOL)
    if departure is not None:
        i, t, expected_t, what = departure
        assert what != "t", (f"model call {i + 1}: you passed t = {t[0]}, the reference t = {expected_t[0]} "
                             "(tau = torch.linspace(T - 1, 0, num_steps).round().long(), one timestep per sample)")
        assert i > 0, ("the starting noise differs from the reference's: draw x = torch.randn(shape, "
                       "generator=generator, device=...) first")
        hint = ("x0_hat, clipped, then x = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next - sigma^2) * eps"
                if eta == 0 else "sigma (eq. 16) and the noise z, drawn after the model call, only when i < N-1")
        raise AssertionError(f"with eta = {eta:g}, your x first differs from the reference's at model call {i + 1} "
                             f"(t = {t[0]}), i.e. after step {i} from t = {expected_calls[i - 1][0][0]}: check {hint}")
    assert len(calls) == len(expected_calls), (
        f"your sampler called the model {len(calls)} times for num_steps = {len(expected_calls)}: once per step")
    assert torch.allclose(out, expected_out, atol=SAMPLER_TRAJECTORY_ATOL), (
        "every model input matched, but the returned x differs: the last step uses abar_next = 1, so it returns "
        "x0_hat, clipped to [-1, 1]")


@pytest.mark.points(4)
def test_matches_the_reference_exactly_with_eta_0(ddim_sample):
    _check_trace(ddim_sample, 0.0)


@pytest.mark.points(3)
def test_matches_the_reference_exactly_with_eta_1(ddim_sample):
    _check_trace(ddim_sample, 1.0)


def _check_gaussian(ddim_sample, eta: float, num_steps: int) -> None:
    mean, std = 0.2, 0.3
    schedule = NoiseSchedule(1000)
    out = ddim_sample(GaussianDataDenoiser(schedule, mean, std), schedule, (256, 1, 8, 8),
                      generator=torch.Generator().manual_seed(0), num_steps=num_steps, eta=eta)
    where = f"with eta = {eta:g} and {num_steps} steps"
    assert abs(out.mean().item() - mean) < GAUSSIAN_MOMENT_TOLERANCE, (
        f"{where}, sample mean {out.mean().item():.3f}, data mean {mean}: the samples do not arrive at the data; "
        "check x0_hat = (x - sqrt(1 - abar) * eps) / sqrt(abar) and that every step moves to tau_{i+1}")
    assert abs(out.std().item() - std) < GAUSSIAN_MOMENT_TOLERANCE, (
        f"{where}, sample std {out.std().item():.3f}, data std {std}: check the square roots of eq. 12"
        + (" and sigma (eq. 16): the noise it adds and the noise it takes from the eps term" if eta else ""))


@pytest.mark.points(3)
def test_deterministic_steps_reproduce_the_mean_and_variance_of_gaussian_data(ddim_sample):
    """Independent of the random-number order: with the exact denoiser, the samples follow the data distribution."""
    _check_gaussian(ddim_sample, 0.0, DDIM_GAUSSIAN_STEPS)


@pytest.mark.points(2)
def test_stochastic_steps_reproduce_the_mean_and_variance_of_gaussian_data(ddim_sample):
    _check_gaussian(ddim_sample, 1.0, DDIM_STOCHASTIC_GAUSSIAN_STEPS)


@pytest.mark.points(2)
def test_calls_the_model_on_evenly_spaced_timesteps_from_T_minus_1_to_0(ddim_sample):
    timesteps = four_step_timesteps(ddim_sample)
    assert timesteps == [999, 666, 333, 0], (
        f"with T = 1000 and 4 steps, t must run 999, 666, 333, 0 (torch.linspace(T - 1, 0, 4).round()); yours: "
        f"{timesteps}")


@pytest.mark.points(1)
def test_returns_clipped_samples_without_autograd_history(ddim_sample):
    out, _ = trace_fast_sampler(ddim_sample, num_steps=3, eta=1.0)
    assert out.shape == (4, 1, 6, 6) and out.dtype == torch.float32, f"returned {tuple(out.shape)}, {out.dtype}"
    assert out.min() >= -1 and out.max() <= 1, "clip x0_hat to [-1, 1] (torch.clamp)"
    assert not out.requires_grad and out.grad_fn is None, (
        "the samples carry autograd history: decorate ddim_sample with @torch.no_grad()")


@pytest.mark.points(2)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(600)
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_moons_samples_have_the_datas_shape(ddim_sample, point_model_class, solution, eta):
    """Your Level 0 moons run, sampled with your DDIM in 50 steps, passes Level 0's bar."""
    model, run_cfg = trained_model("moons", point_model_class, solution)
    data = load_data(official_config("moons").data)
    generator = torch.Generator().manual_seed(0)
    samples = ddim_sample(model.eval(), NoiseSchedule.from_config(run_cfg.diffusion), (POINT_EVAL_SAMPLES, 2),
                          generator=generator, num_steps=EVAL_STEPS, eta=eta)
    reasons = judge_points(point_quality(samples.float(), data.train, data.val), "moons")
    assert not reasons, "; ".join(reasons) + (
        f" (your DDIM with eta = {eta:g}, 50 steps, on your Level 0 moons run: if Level 0's moons test passes, check "
        f"the tests above; without a run, train one with `{command('moons', solution)}`)")
