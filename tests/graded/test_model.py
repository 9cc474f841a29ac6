"""Basics: the contract of DiffusionModel in src/model.py (shapes, dtype, time conditioning, gradients)."""

import pytest
import torch

from src.harness.grade.probes import gradients, jittered, size
from src.harness.loading import REFERENCE
from src.harness.policy import PARAMETER_BUDGET  # your model may have at most this many times the reference's
from src.harness.run.config import official_config
from src.harness.run.kinds import build_model
from tests.graded.recorded import Recording

pytestmark = pytest.mark.basics
T = 1000
DATASETS = {"fashion_mnist": (1, 28), "cifar10": (3, 32)}


def _reference_parameters() -> dict:
    """The reference model's parameter count at configs/<dataset>.yaml, for each of DATASETS."""
    models = {dataset: build_model(official_config(dataset), REFERENCE) for dataset in DATASETS}
    return {"parameters": {dataset: sum(p.numel() for p in model.parameters()) for dataset, model in models.items()}}


RECORDING = Recording("model", _reference_parameters)


def _inputs(channels, size, batch, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, size, size, generator=g), torch.randint(0, T, (batch,), generator=g)


@pytest.mark.points(1)
@pytest.mark.parametrize("dataset, batch", [("fashion_mnist", 1), ("fashion_mnist", 5), ("cifar10", 1), ("cifar10", 3)])
def test_output_shape_equals_input_shape(model_class, dataset, batch):
    channels, size = DATASETS[dataset]
    x, t = _inputs(channels, size, batch)
    out = model_class(channels, size)(x, t)
    assert tuple(out.shape) == tuple(x.shape), (
        f"for x of shape {tuple(x.shape)} your model returned {tuple(out.shape)}; it must predict noise shaped like x")


@pytest.mark.points(1)
def test_output_is_float32(model_class):
    x, t = _inputs(1, 28, 2)
    out = model_class(1, 28)(x, t)
    assert out.dtype == torch.float32, f"the output is {out.dtype}; return float32 (no .half() or .double())"


@pytest.mark.points(1)
def test_first_and_last_timestep_are_accepted(model_class):
    x, _ = _inputs(1, 28, 2)
    out = model_class(1, 28)(x, torch.tensor([0, T - 1]))
    assert torch.isfinite(out).all(), "t = 0 and t = T-1 must give finite outputs"


@pytest.mark.points(3)
def test_output_depends_on_t(model_class):
    model = jittered(model_class(1, 28))
    x, _ = _inputs(1, 28, 1)
    with torch.no_grad():
        outs = [model(x, torch.tensor([t])) for t in (0, T // 2, T - 1)]
    spread = max((a - b).abs().max().item() for a in outs for b in outs)
    assert spread > 1e-4 * (outs[0].abs().mean().item() + 1e-3), (
        "your model gives the same output for t = 0, T/2 and T-1: it ignores the timestep. "
        "Embed t (SinusoidalTimestepEmbedding in src/utils.py) and add it to the features")


@pytest.mark.points(2)
def test_output_depends_on_x(model_class):
    model = jittered(model_class(1, 28))
    (x1, t), (x2, _) = _inputs(1, 28, 1, seed=0), _inputs(1, 28, 1, seed=1)
    with torch.no_grad():
        difference = (model(x1, t) - model(x2, t)).abs().max().item()
    assert difference > 1e-4, "your model gives the same output for two different images: it ignores x"


@pytest.mark.points(1)
def test_output_is_finite(model_class):
    model = model_class(3, 32).eval()
    x, t = _inputs(3, 32, 4)
    with torch.no_grad():
        for scale in (0.0, 1.0, 4.0):
            assert torch.isfinite(model(x * scale, t)).all(), f"NaN or inf in the output for inputs scaled by {scale}"


@pytest.mark.points(2)
def test_gradients_reach_the_parameters(model_class):
    x, t = _inputs(1, 28, 4)
    report = gradients(model_class(1, 28), x, t)
    assert report["trainable"], "your model has no trainable parameters (build layers in __init__ as attributes)"
    assert report["attached"], ("no gradient reaches the parameters: the output is cut off from them "
                                "(a .detach(), .item(), .numpy() or torch.no_grad() inside forward?)")
    assert not report["missing"], (f"no gradient reaches {report['missing'][:3]}: is the output detached, or a layer "
                                   "unused?")
    assert report["finite"], "NaN or inf in the gradients"
    assert report["total"] > 0, "all gradients are zero"


@pytest.mark.points(1)
@pytest.mark.parametrize("dataset", DATASETS)
def test_parameter_budget(model_class, dataset):
    channels, size_ = DATASETS[dataset]
    budget = PARAMETER_BUDGET * RECORDING.values()["parameters"][dataset]
    counted = size(model_class(channels, size_))
    count = counted["parameters"] + counted["held"]
    held = (f", {counted['held'] / 1e6:.1f} M of them in tensors it holds besides its parameters"
            if counted["held"] else "")
    assert count <= budget, (f"your model has {count / 1e6:.1f} M numbers for {dataset}{held}; the budget is "
                             f"{budget / 1e6:.1f} M ({PARAMETER_BUDGET}x the reference's parameters): make it smaller")


@pytest.mark.points(1)
def test_works_in_train_and_eval_mode_and_without_grad(model_class):
    model = model_class(1, 28)
    x, t = _inputs(1, 28, 3)
    for mode in ("train", "eval"):
        getattr(model, mode)()
        assert model(x, t).shape == x.shape, f"wrong shape in {mode} mode"
        with torch.no_grad():
            assert torch.isfinite(model(x, t)).all(), f"NaN or inf under torch.no_grad in {mode} mode"
