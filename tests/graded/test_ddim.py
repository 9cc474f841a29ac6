"""Level 5: the DDIM sampler in src/sampler.py: its exact steps, Gaussian data, and samples of the two moons."""

import pytest
import torch

from src.harness.loading import REFERENCE
from src.harness.policy import (DDIM_GAUSSIAN_STEPS, DDIM_NOISE_TOLERANCE, DDIM_STOCHASTIC_GAUSSIAN_STEPS, EVAL_STEPS,
                                GAUSSIAN_MOMENT_TOLERANCE, POINT_EVAL_SAMPLES, SAMPLER_TRAJECTORY_ATOL,
                                SAMPLER_X_T_ATOL)
from src.harness.run.config import official_config
from src.harness.run.data import load_data
from src.harness.run.points import judge_points, point_quality
from src.harness.run.schedule import NoiseSchedule
from tests.graded.fakes import GaussianDataDenoiser, first_departure, four_step_timesteps, trace_fast_sampler
from tests.graded.recorded import Recording, trace_seed
from tests.graded.runs import command, trained_model

pytestmark = pytest.mark.level5
DDIM_ETAS = (0.0, 1.0)  # the etas whose traces are recorded


def _reference_traces(seed: int = 0) -> dict:
    """{str(eta): the reference's trace_fast_sampler(ddim_sample, eta=eta)} for each of DDIM_ETAS."""
    ddim_sample = REFERENCE.module("sampler").ddim_sample
    return {str(eta): trace_fast_sampler(ddim_sample, eta=eta, seed=seed) for eta in DDIM_ETAS}


RECORDING = Recording("ddim", _reference_traces, seeded=True)


def _check_trace(ddim_sample, eta: float) -> None:
    out, calls = trace_fast_sampler(ddim_sample, eta=eta, seed=trace_seed())
    expected_out, expected_calls = RECORDING.values()[str(eta)]
    departure = first_departure(calls, expected_calls, SAMPLER_X_T_ATOL, SAMPLER_TRAJECTORY_ATOL)
    if departure is not None:
        i, t, expected_t, what = departure
        assert what != "t", (f"model call {i + 1}: you passed t = {t[0]}, the reference t = {expected_t[0]} "
                             "(tau = torch.linspace(T - 1, 0, num_steps).round().long(), one timestep per sample)")
        assert i > 0, ("the starting noise differs from the reference's: draw x = torch.randn(shape, "
                       "generator=generator, device=...) first")
        hint = ("x0_hat, clipped to [-1, 1], then x = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next) * eps"
                if eta == 0 else "x0_hat, clipped to [-1, 1], sigma (eq. 16), the eps term sqrt(1 - abar_next - "
                "sigma^2) * eps, and the noise z, drawn after the model call, only when i < N-1 (the per-step tests "
                "below point at the term)")
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


class WavyModel(torch.nn.Module):
    """A fixed noise predictor that remembers its calls; its eps (std about 0.7) is strong enough that a wrong
    coefficient of the eps term shows in every step."""

    def __init__(self):
        super().__init__()
        self.calls = []  # (t as a list, a copy of x)

    def forward(self, x, t):
        self.calls.append((t.tolist(), x.detach().clone()))
        return torch.sin(2 * x + t.float().view(-1, 1, 1, 1) / 1000)


def _ddim_steps(ddim_sample, eta: float, num_steps: int = 10):
    """Each step of a run on WavyModel, in the terms of eq. 12, whatever the order of random draws: (step i, t,
    x0_hat unclipped, eps, abar_next, sigma of eq. 16, the x that followed: the next model input or, after the last
    step, the returned samples)."""
    schedule, model = NoiseSchedule(1000), WavyModel()
    out = ddim_sample(model, schedule, (64, 1, 8, 8), generator=torch.Generator().manual_seed(0),
                      num_steps=num_steps, eta=eta)
    calls = model.calls
    assert len(calls) == num_steps, (
        f"your sampler called the model {len(calls)} times for num_steps = {num_steps}: once per step")
    steps = []
    for i, (t, x) in enumerate(calls):
        last = i + 1 == len(calls)
        eps = torch.sin(2 * x + t[0] / 1000)
        abar = schedule.alphas_cumprod[t[0]]
        abar_next = torch.ones(()) if last else schedule.alphas_cumprod[calls[i + 1][0][0]]
        x0_hat = (x - (1 - abar).sqrt() * eps) / abar.sqrt()
        sigma = eta * ((1 - abar_next) / (1 - abar)).sqrt() * (1 - abar / abar_next).sqrt()
        steps.append((i, t[0], x0_hat, eps, abar_next, sigma, out if last else calls[i + 1][1]))
    return steps


def _looks_like_noise(residual: torch.Tensor, *terms: torch.Tensor) -> bool:
    """Whether `residual` has mean about 0 and is uncorrelated with each of `terms` (a wrong coefficient is not)."""
    flat = residual.flatten()
    return bool(flat.mean().abs() < 0.1 * flat.std()) and all(
        torch.corrcoef(torch.stack([flat, term.flatten()]))[0, 1].abs() < 0.1 for term in terms)


@pytest.mark.points(2)
def test_deterministic_step_follows_eq_12_without_noise(ddim_sample):
    """Independent of the random-number order: with eta = 0 each step is eq. 12 with sigma = 0, read off the model's
    own inputs."""
    for i, t, x0_hat, eps, abar_next, _, x_next in _ddim_steps(ddim_sample, eta=0.0):
        clipped = x0_hat.clamp(-1, 1)
        expected = abar_next.sqrt() * clipped + (1 - abar_next).sqrt() * eps
        if torch.allclose(x_next, expected, atol=SAMPLER_TRAJECTORY_ATOL):
            continue
        unclipped = abar_next.sqrt() * x0_hat + (1 - abar_next).sqrt() * eps
        assert not torch.allclose(x_next, unclipped, atol=SAMPLER_TRAJECTORY_ATOL), (
            f"with eta = 0, step {i + 1} (from t = {t}) uses x0_hat unclipped: clip it to [-1, 1] "
            "(x0_hat.clamp(-1, 1)) before the update")
        residual = x_next - expected
        assert not _looks_like_noise(residual, eps, clipped), (
            f"with eta = 0, step {i + 1} (from t = {t}) adds noise (std {residual.std():.3f}): sigma of eq. 16 has "
            "the factor eta, so a deterministic DDIM step (eta = 0) draws no noise")
        raise AssertionError(
            f"with eta = 0, step {i + 1} (from t = {t}) is not eq. 12 with sigma = 0: x_next = sqrt(abar_next) * "
            "x0_hat + sqrt(1 - abar_next) * eps, with x0_hat = (x - sqrt(1 - abar) * eps) / sqrt(abar) clipped, "
            "and abar_next = 1 after the last step")


@pytest.mark.points(2)
def test_stochastic_step_adds_the_noise_of_eq_16(ddim_sample):
    """Independent of the random-number order: with eta = 1 each step (the last aside) is eq. 12 plus sigma * z,
    z ~ N(0, I) fresh at each step, with sigma from eq. 16."""
    steps = _ddim_steps(ddim_sample, eta=1.0)
    sigma_formula = "sigma = eta * sqrt((1 - abar_next) / (1 - abar)) * sqrt(1 - abar / abar_next)"
    noise = [(x_next - abar_next.sqrt() * x0_hat.clamp(-1, 1)
              - (1 - abar_next - sigma ** 2).clamp(min=0).sqrt() * eps) / sigma
             for _, _, x0_hat, eps, abar_next, sigma, x_next in steps[:-1]]
    z = torch.cat([each.flatten() for each in noise])
    deterministic = all(torch.allclose(x_next, abar_next.sqrt() * x0_hat.clamp(-1, 1) + (1 - abar_next).sqrt() * eps,
                                       atol=SAMPLER_TRAJECTORY_ATOL)
                        for _, _, x0_hat, eps, abar_next, _, x_next in steps[:-1])
    assert z.std() > 0.2 and not deterministic, (
        f"with eta = 1 your steps add no noise (std {z.std():.2f} x sigma): add sigma * z after each step but the "
        f"last, with z ~ N(0, I) and {sigma_formula}; does your sampler use eta?")
    for (i, t, _, eps, _, _, _), each in zip(steps, noise):
        slope = ((each - each.mean()) * (eps - eps.mean())).mean() / eps.var()  # what is left of eps in the noise
        assert abs(slope) < 3 * DDIM_NOISE_TOLERANCE, (
            f"with eta = 1, step {i + 1} (from t = {t}) is not eq. 12 plus fresh noise: the eps term must be "
            f"sqrt(1 - abar_next - sigma^2) * eps (it gives up sigma^2 of its variance to the noise), with "
            f"{sigma_formula}")
    assert abs(z.std() - 1) < DDIM_NOISE_TOLERANCE and abs(z.mean()) < DDIM_NOISE_TOLERANCE, (
        f"with eta = 1 the noise your steps add has mean {z.mean():.2f} and std {z.std():.2f} x sigma of eq. 16: "
        f"it must be sigma * z, z ~ N(0, I), with {sigma_formula}")
    _, _, x0_hat, _, _, _, out = steps[-1]
    assert torch.allclose(out, x0_hat.clamp(-1, 1), atol=SAMPLER_TRAJECTORY_ATOL), (
        "the last step (to abar_next = 1, where sigma = 0) returns x0_hat clipped to [-1, 1], with no noise")


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
    assert torch.isfinite(out).all(), (
        "your samples hold NaN or inf: the timesteps must run down from T-1 to 0 (abar grows at each step), and "
        "abar_next is 1 after the last step")
    assert out.min() >= -1 and out.max() <= 1, "clip x0_hat to [-1, 1] (torch.clamp)"
    assert not out.requires_grad and out.grad_fn is None, (
        "the samples carry autograd history: decorate ddim_sample with @torch.no_grad()")


@pytest.mark.points(2)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(600)
@pytest.mark.parametrize("eta", DDIM_ETAS)
def test_moons_samples_have_the_datas_shape(ddim_sample, point_model_class, source, eta):
    """Your Level 0 moons run, sampled with your DDIM in 50 steps, passes Level 0's bar."""
    model, run_cfg = trained_model("moons", point_model_class, source)
    data = load_data(official_config("moons").data)
    generator = torch.Generator().manual_seed(0)
    samples = ddim_sample(model.eval(), NoiseSchedule.from_config(run_cfg.diffusion), (POINT_EVAL_SAMPLES, 2),
                          generator=generator, num_steps=EVAL_STEPS, eta=eta)
    reasons = judge_points(point_quality(samples.float(), data.train, data.val), "moons")
    assert not reasons, "; ".join(reasons) + (
        f" (your DDIM with eta = {eta:g}, 50 steps, on your Level 0 moons run: if Level 0's moons test passes, check "
        f"the tests above; without a run, train one with `{command('moons', source)}`)")
