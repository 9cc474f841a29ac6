"""Level 0: PointModel in src/point_model.py (its contract), and the samples of its trained two-moons run."""

from contextlib import nullcontext

import pytest
import torch

from src.harness.grade.probes import gradients, jittered
from src.harness.run.config import official_config
from src.harness.run.data import load_data
from src.harness.run.objective import make_objective
from src.harness.run.points import evaluation_points, judge_points, point_quality
from tests.graded.runs import command, trained_model

pytestmark = pytest.mark.level0
T = 1000


def _inputs(batch: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 2, generator=g) * 0.7, torch.randint(0, T, (batch,), generator=g)


@pytest.mark.points(1)
@pytest.mark.parametrize("batch", [1, 7])
def test_output_is_float32_shaped_like_x(point_model_class, batch):
    x, t = _inputs(batch)
    out = point_model_class(2)(x, t)
    assert tuple(out.shape) == (batch, 2) and out.dtype == torch.float32, (
        f"for x of shape {tuple(x.shape)} your PointModel returned {out.dtype} of shape {tuple(out.shape)}; "
        "it must predict float32 noise shaped like x: (B, 2)")


@pytest.mark.points(1)
def test_output_is_finite_at_the_first_and_last_timestep(point_model_class):
    x, _ = _inputs(2)
    with torch.no_grad():
        out = point_model_class(2).eval()(x, torch.tensor([0, T - 1]))
    assert torch.isfinite(out).all(), "NaN or inf in the output at t = 0 or t = T-1"


@pytest.mark.points(1)
def test_output_depends_on_t(point_model_class):
    model = jittered(point_model_class(2))
    x, _ = _inputs(1)
    with torch.no_grad():
        outs = [model(x, torch.tensor([t])) for t in (0, T // 2, T - 1)]
    spread = max((a - b).abs().max().item() for a in outs for b in outs)
    assert spread > 1e-4 * (outs[0].abs().mean().item() + 1e-3), (
        "your PointModel gives the same output for t = 0, T/2 and T-1: it ignores the timestep. Feed it t / T or "
        "a sinusoidal embedding of t (src/utils.py) beside the point")


@pytest.mark.points(1)
def test_output_depends_on_x(point_model_class):
    model = jittered(point_model_class(2))
    (x1, t), (x2, _) = _inputs(1, seed=0), _inputs(1, seed=1)
    with torch.no_grad():
        difference = (model(x1, t) - model(x2, t)).abs().max().item()
    assert difference > 1e-4, "your PointModel gives the same output for two different points: it ignores x"


@pytest.mark.points(1)
def test_output_is_not_affine_in_x(point_model_class):
    """An MLP without nonlinearities is an affine map of x: DDPM with it can only ever draw a Gaussian."""
    model = jittered(point_model_class(2))
    (a, t), (b, _) = _inputs(64, seed=0), _inputs(64, seed=1)
    with torch.no_grad():
        out_a, out_b, out_mid = model(a, t), model(b, t), model((a + b) / 2, t)
    bend = ((out_a + out_b) / 2 - out_mid).abs().max().item()
    assert bend > 1e-4 * (out_a - out_b).abs().max().item() + 1e-6, (
        "your PointModel is an affine map of x (its output at the midpoint of two points is the mean of their "
        "outputs): put a nonlinearity (ReLU, SiLU, ...) between its linear layers, or it can only learn a Gaussian")


@pytest.mark.points(1)
def test_each_point_is_denoised_on_its_own(point_model_class):
    model = jittered(point_model_class(2))
    x, t = _inputs(8)
    with torch.no_grad():
        together = model(x, t)
        alone = torch.cat([model(x[i:i + 1], t[i:i + 1]) for i in range(len(x))])
    assert torch.allclose(together, alone, atol=1e-5), (
        "a point's output changes with the other points in its batch (BatchNorm, or a mean over the batch?): "
        "each point must be denoised on its own")


@pytest.mark.points(1)
def test_gradients_reach_the_parameters(point_model_class):
    x, t = _inputs(4)
    report = gradients(point_model_class(2), x, t)
    assert report["attached"], ("no gradient reaches the parameters: the output is cut off from them "
                                "(a .detach(), .item() or torch.no_grad() inside forward?)")
    assert not report["missing"], (f"no gradient reaches {report['missing'][:3]}: is the output detached, or a layer "
                                   "unused?")


@pytest.mark.points(4)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(600)
def test_moons_samples_have_the_datas_shape(point_model_class, source):
    model, run_cfg = trained_model("moons", point_model_class, source)
    data = load_data(official_config("moons").data)
    samples = evaluation_points(model, make_objective(run_cfg.diffusion), nullcontext)
    reasons = judge_points(point_quality(samples, data.train, data.val), "moons")
    assert not reasons, "; ".join(reasons) + (
        " (the budget is fixed: what helps is the network. A cloud around the moons usually means too small a "
        "network: give it three hidden layers of 64 to 128 units, as the stub says; ReLU learns the sharp ends "
        f"fastest. Then rerun `{command('moons', source)} --overwrite`)")
