"""Level 9: steered_sample in src/steer.py, and Level 1's trained run steered with it (inpainting, classes).

A steered sampler takes gradients through the model and the goal, so the fakes it is graded on are built beside it
(src/harness/grade/steering.py); these tests judge what comes back."""

from functools import lru_cache

import pytest
import torch

from src.harness.grade.steering import (SteeringProbeModel, class_steered, gaussian_tilted, inpainted,
                                        steering_trace, trace_goal)
from src.harness.loading import REFERENCE, CodeSource
from src.harness.policy import (DDIM_GAUSSIAN_STEPS, GAUSSIAN_MOMENT_TOLERANCE, SAMPLER_TRAJECTORY_ATOL,
                                SAMPLER_X_T_ATOL, STEERED_AGREEMENT, STEERED_INPAINTING_KEPT_CLASS,
                                STEERED_INPAINTING_RMSE)
from src.harness.run.config import official_config
from src.harness.run.data import load_data
from src.harness.run.guidance import class_agreement
from src.harness.run.quality import judge
from src.harness.run.runtime import Runtime
from src.harness.run.schedule import NoiseSchedule
from src.harness.run.steering import inpainting_scores, steering_inputs
from tests.graded.recorded import Recording, trace_seed
from tests.graded.runs import command, quality_of, trained_model

pytestmark = pytest.mark.level9
T = 1000
RECORDED_SCALES = (0.0, 1.0, 5.0)  # the steering scales whose traces are recorded


def _reference_traces(seed: int = 0) -> dict:
    """{str(scale): the reference's steering_trace} for each of RECORDED_SCALES."""
    steered_sample = REFERENCE.module("steer").steered_sample
    return {str(scale): {key: value for key, value in steering_trace(steered_sample, scale, seed).items()
                         if key in ("out", "t", "x")} for scale in RECORDED_SCALES}


RECORDING = Recording("steer", _reference_traces, seeded=True)


# ------------------------------------------------------------------------------------- the sampler

@pytest.mark.points(2)
@pytest.mark.parametrize("scale", RECORDED_SCALES)
def test_matches_the_reference_exactly(steered_sample, scale):
    trace = steering_trace(steered_sample, scale, trace_seed())
    expected = RECORDING.values()[str(scale)]
    for i, (t, x, expected_t, expected_x) in enumerate(zip(trace["t"], trace["x"], expected["t"], expected["x"])):
        assert t == expected_t, (
            f"model call {i + 1}: you passed t = {t[0]}, the reference t = {expected_t[0]}: step through "
            "tau = torch.linspace(T - 1, 0, num_steps).round().long(), one model call per step, one t per image")
        assert torch.allclose(x, expected_x, atol=SAMPLER_X_T_ATOL if i == 0 else SAMPLER_TRAJECTORY_ATOL), (
            "the starting noise differs from the reference's: draw x = torch.randn(shape, generator=generator, "
            "device=...) first, and nothing else" if i == 0 else
            f"with scale = {scale:g}, your x first differs from the reference's at step {i + 1}: "
            + _step_hint(trace["t"][i - 1][0], trace["x"][i - 1], t[0], x, scale))
    assert len(trace["t"]) == len(expected["t"]), (
        f"your sampler called the model {len(trace['t'])} times for 10 steps: once per step")
    assert torch.allclose(trace["out"], expected["out"], atol=SAMPLER_TRAJECTORY_ATOL), (
        "every model input matched, but the returned x differs: the last step returns x0_hat, clipped to [-1, 1]")


def _step_hint(t: int, x: torch.Tensor, t_next: int, x_next: torch.Tensor, scale: float) -> str:
    """Which usual mistake turns the step from (t, x) into your x_next, if one does: the step is redone from your own
    x with each."""
    schedule, model = NoiseSchedule(T), SteeringProbeModel()
    abar, abar_next = schedule.alphas_cumprod[t], schedule.alphas_cumprod[t_next]
    step = torch.full((len(x),), t)

    def gradient(of_x0_hat=True, through_model=True, wrt_x0_hat=False):
        leaf = x.clone().requires_grad_(True)
        with torch.enable_grad():
            eps = model(leaf, step)
            eps = eps if through_model else eps.detach()
            x0 = (leaf - (1 - abar).sqrt() * eps) / abar.sqrt() if of_x0_hat else leaf
            if wrt_x0_hat:
                x0 = x0.detach().requires_grad_(True)
            return torch.autograd.grad(trace_goal(x0).sum(), x0 if wrt_x0_hat else leaf)[0], eps.detach()

    def step_with(grad, eps, factor=None, clip=True, implied_eps=True, shift_x=False):
        steered = eps if shift_x else eps - scale * ((1 - abar).sqrt() if factor is None else factor) * grad
        x0 = (x - (1 - abar).sqrt() * steered) / abar.sqrt()
        x0 = x0.clamp(-1, 1) if clip else x0
        noise = (x - abar.sqrt() * x0) / (1 - abar).sqrt() if implied_eps else steered
        return abar_next.sqrt() * x0 + (1 - abar_next).sqrt() * noise + (scale * grad if shift_x else 0)

    grad, eps = gradient()
    mistakes = [
        (step_with(-grad, eps), "the gradient's sign is flipped: eps = eps - scale * sqrt(1 - abar) * grad (adding "
                                "to the score takes away from eps, since eps = -sqrt(1 - abar) * score)"),
        (step_with(grad, eps, factor=1.0), "eps moves by scale * sqrt(1 - abar) * grad, not scale * grad"),
        (step_with(*gradient(wrt_x0_hat=True)), "take the gradient with respect to x_t (the leaf you made), not "
                                                "x0_hat: it flows back through x0_hat and the model"),
        (step_with(*gradient(through_model=False)), "the gradient must flow through the model too: call the model "
                                                    "on the leaf x with autograd on, and do not detach eps before "
                                                    "x0_hat"),
        (step_with(*gradient(of_x0_hat=False)), "evaluate the goal on x0_hat = (x - sqrt(1 - abar) * eps) / "
                                                "sqrt(abar), not on x_t"),
        (step_with(grad, eps, clip=False), "clip the steered x0_hat to [-1, 1] before the update"),
        (step_with(grad, eps, implied_eps=False), "after clipping x0_hat, use the noise it implies, eps_hat = (x - "
                                                  "sqrt(abar) * x0_hat) / sqrt(1 - abar), in the update"),
        (step_with(grad, eps, shift_x=True), "steer the score, through eps (eps - scale * sqrt(1 - abar) * grad), "
                                             "not x after the step"),
    ]
    return next((why for candidate, why in mistakes if torch.allclose(x_next, candidate, atol=SAMPLER_TRAJECTORY_ATOL)),
                "check grad (of goal(x0_hat).sum() with respect to x_t), eps - scale * sqrt(1 - abar) * grad, then "
                "x0_hat (clipped), eps_hat and x = sqrt(abar_next) * x0_hat + sqrt(1 - abar_next) * eps_hat")


# With the exact denoiser of Gaussian data N(m, s^2), pixel by pixel, and the linear goal c . x0, steering samples
# the tilted data p(x0) exp(scale * c . x0), which is N(m + scale * s^2 * c, s^2): the gradient of c . x0_hat(x_t) is
# the tilt's exact score (E[x0 | x_t] is linear in x_t and Var[x0 | x_t] does not depend on it), so the answer is
# known in closed form, whatever the order of random draws. c is +1 on the left half of each image, -1 on the right.
GAUSSIAN_MEAN, GAUSSIAN_STD, GAUSSIAN_SCALE = 0.0, 0.25, 4.0  # the tilt moves each half by 4 * 0.25^2 = 0.25


@pytest.mark.points(3)
def test_a_linear_goal_tilts_gaussian_data_as_the_posterior_says(steered_sample):
    m, s = GAUSSIAN_MEAN, GAUSSIAN_STD
    for scale in (0.0, GAUSSIAN_SCALE):
        out = gaussian_tilted(steered_sample, scale, m, s, DDIM_GAUSSIAN_STEPS)
        half = out.shape[-1] // 2
        for name, values, c in (("left", out[..., :half], 1), ("right", out[..., half:], -1)):
            want = m + scale * s ** 2 * c
            assert abs(values.mean().item() - want) < GAUSSIAN_MOMENT_TOLERANCE, (
                f"with scale = {scale:g}, the {name} half of the samples has mean {values.mean().item():.3f}, and "
                f"the tilted data {want:.3f}" + (
                    ": with scale 0 the sampler must be plain deterministic DDIM" if scale == 0 else
                    f" (the unsteered {m:g} moved by scale * std^2 * c = {scale * s ** 2 * c:+.2f}): check the "
                    "gradient (of goal(x0_hat).sum() with respect to x_t, through the model), its sign, and the "
                    "factor sqrt(1 - abar)"))
            assert abs(values.std().item() - s) < GAUSSIAN_MOMENT_TOLERANCE, (
                f"with scale = {scale:g}, the {name} half of the samples has std {values.std().item():.3f}, the "
                f"tilted data {s}: steering moves the mean only; check the step: x0_hat (clipped), eps_hat, then x")


@pytest.mark.points(1)
def test_each_image_is_steered_by_its_own_goal(steered_sample):
    shape = (4, 1, 8, 8)
    free = gaussian_tilted(steered_sample, 0.0, GAUSSIAN_MEAN, GAUSSIAN_STD, 20, shape)
    first = gaussian_tilted(steered_sample, GAUSSIAN_SCALE, GAUSSIAN_MEAN, GAUSSIAN_STD, 20, shape, only_first=True)
    assert not torch.allclose(first[0], free[0], atol=1e-4), (
        "a goal that rewards only image 0 left it unchanged: use the gradient of goal(x0_hat).sum(), which holds "
        "each image's own gradient")
    assert torch.allclose(first[1:], free[1:], atol=1e-5), (
        "a goal that rewards only image 0 changed the other images: each image must move by its own gradient "
        "(no normalising over the batch)")


@pytest.mark.points(1)
def test_each_step_starts_a_fresh_graph(steered_sample):
    fresh = steering_trace(steered_sample, 1.0)["fresh_leaf"]
    stale = [i + 1 for i, leaf in enumerate(fresh) if not leaf]
    assert not stale, (
        f"at step {stale[0]} the model got an x that was not a fresh leaf requiring grad: start each step with "
        "x = x.detach().requires_grad_(True), or the graph of every earlier step is kept and memory grows with "
        "the steps")


@pytest.mark.points(1)
def test_works_under_no_grad_and_returns_no_history(steered_sample):
    try:
        trace = steering_trace(steered_sample, 1.0, grad_enabled=False)
    except RuntimeError as err:
        raise AssertionError(f"called under torch.no_grad(), your sampler failed ({str(err).splitlines()[0]}): take "
                             "the gradient inside `with torch.enable_grad():`") from None
    with_grad = steering_trace(steered_sample, 1.0)
    assert not with_grad["out_requires_grad"], (
        "the samples carry autograd history: detach x after each gradient, and return it clipped")
    assert torch.allclose(trace["out"], with_grad["out"], atol=1e-6), (
        "under torch.no_grad() your sampler returned other samples than with autograd on: steer the same way "
        "(torch.enable_grad() around the gradient)")


# ------------------------------------------------------------------------------------- Level 1's run, steered

@lru_cache(maxsize=2)
def _steered_run(model_class, steered_sample, source: CodeSource) -> dict:
    """What the graded scales of configs/fashion_mnist_steer.yaml give on the student's Level 1 run (the
    reference's recorded one with --solution): {"inpainting": inpainting_scores, "agreement": share}. Scale 0, the
    unsteered sampler, is pinned by the exact traces above, so its agreement (chance) is not drawn again here."""
    model, run_cfg = trained_model("fashion_mnist", model_class, source)
    steering = official_config("fashion_mnist_steer").steering
    schedule = NoiseSchedule.from_config(run_cfg.diffusion)
    images, labels, class_labels = steering_inputs(steering, load_data(official_config("fashion_mnist").data))
    autocast = Runtime.choose("cpu", official_config("fashion_mnist").training.precision).autocast
    with autocast():
        samples = inpainted(steered_sample, model, schedule, images, steering.inpainting_scale, steering.steps)
    with autocast():
        steered = class_steered(steered_sample, model, schedule, tuple(images.shape[1:]), class_labels,
                                "fashion_mnist", steering.class_scale, steering.steps)
    return {"inpainting": inpainting_scores(samples, images, labels, "fashion_mnist"),
            "agreement": class_agreement(steered, class_labels, "fashion_mnist")}


def _advice(source: CodeSource) -> str:
    return (" (if the sampler tests above pass, your Level 1 run may be too weak to steer: see `"
            f"{command('fashion_mnist_steer', source)}` for the figures, and improve Level 1)")


@pytest.mark.points(3)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_trained_run_inpaints_the_known_half(model_class, steered_sample, source):
    scale = official_config("fashion_mnist_steer").steering.inpainting_scale
    scores = _steered_run(model_class, steered_sample, source)["inpainting"]
    assert scores["known_rmse"] <= STEERED_INPAINTING_RMSE, (
        f"at scale {scale:g}, your inpainted samples miss the known top half by {scores['known_rmse']:.3f} (root "
        f"mean square, images in [-1, 1]); at most {STEERED_INPAINTING_RMSE} is needed" + _advice(source))
    assert scores["kept_class"] >= STEERED_INPAINTING_KEPT_CLASS, (
        f"the classifier puts {scores['kept_class']:.0%} of your inpainted samples in their original's class; at "
        f"least {STEERED_INPAINTING_KEPT_CLASS:.0%} is needed: the drawn half must fit the kept one" + _advice(source))


@pytest.mark.points(3)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_trained_run_steers_towards_the_class(model_class, steered_sample, source):
    scale = official_config("fashion_mnist_steer").steering.class_scale
    not_recognisable = judge(quality_of("fashion_mnist", model_class, source), "fashion_mnist")
    assert not not_recognisable, (
        "class steering is graded on a Level 1 run whose samples are recognisable, and yours are not yet ("
        f"{not_recognisable[0]}): steering a network that draws no garments only fools the classifier. Pass Level "
        "1's test_fashion_mnist_samples_are_recognisable first")
    agreement = _steered_run(model_class, steered_sample, source)["agreement"]
    assert agreement >= STEERED_AGREEMENT, (
        f"at scale {scale:g}, the classifier sees the class asked for in {agreement:.0%} of your samples (chance: "
        f"10%); at least {STEERED_AGREEMENT:.0%} is needed" + _advice(source))
