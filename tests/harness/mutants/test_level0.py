"""Level 0: broken point models each fail a named graded test."""

import pytest
import torch

from calibration.points import trained_run
from src.harness.loading import STUDENT
from src.solution.point_model import PointModel as ReferencePoint
from tests.graded import test_points
from tests.harness.mutants import caught


class PointIgnoresTime(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, torch.zeros_like(t))


class PointIgnoresX(ReferencePoint):
    def forward(self, x, t):
        return super().forward(torch.zeros_like(x), t)


class PointNormalisesOverTheBatch(ReferencePoint):
    """Standardises the points with the batch's statistics, as a BatchNorm in training mode does."""

    def forward(self, x, t):
        return super().forward((x - x.mean(0)) / (x.std(0) + 1e-5) if len(x) > 1 else x, t)


class PointReturnsOneNumber(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, t).sum(dim=1, keepdim=True)


class PointReturnsFloat64(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, t).double()


class PointEmbedsTooFewTimesteps(ReferencePoint):
    """A learned embedding table one row short: t = T-1 is out of range."""

    def __init__(self, dim):
        super().__init__(dim)
        self.table = torch.nn.Embedding(999, dim)

    def forward(self, x, t):
        return super().forward(x, t) + self.table(t)


class PointDetachesItsOutput(ReferencePoint):
    def forward(self, x, t):
        return super().forward(x, t).detach()


class PointHasAnUnusedLayer(ReferencePoint):
    def __init__(self, dim):
        super().__init__(dim)
        self.forgotten = torch.nn.Linear(128, 128)


class PointIsLinear(torch.nn.Module):
    """An MLP with its activations forgotten: it can only learn a Gaussian."""

    def __init__(self, dim):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, 128), torch.nn.Linear(128, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.float()[:, None] / 1000], dim=1))


POINT_MUTANTS = [
    caught(PointIgnoresTime, test_points.test_output_depends_on_t, "ignores the timestep"),
    caught(PointIgnoresX, test_points.test_output_depends_on_x, "ignores x"),
    caught(PointNormalisesOverTheBatch, test_points.test_each_point_is_denoised_on_its_own, "other points"),
    caught(PointReturnsOneNumber, test_points.test_output_is_float32_shaped_like_x, "shaped like x", batch=7),
    caught(PointReturnsFloat64, test_points.test_output_is_float32_shaped_like_x, "float64", batch=1),
    caught(PointEmbedsTooFewTimesteps, test_points.test_output_is_finite_at_the_first_and_last_timestep,
           "index out of range"),
    caught(PointDetachesItsOutput, test_points.test_gradients_reach_the_parameters, "no gradient reaches"),
    caught(PointHasAnUnusedLayer, test_points.test_gradients_reach_the_parameters, "forgotten"),
    caught(PointIsLinear, test_points.test_output_is_not_affine_in_x, "affine map of x"),
]


@pytest.mark.parametrize("mutant, graded_test, params, reason", POINT_MUTANTS)
def test_point_model_mutant_is_caught(mutant, graded_test, params, reason):
    with pytest.raises(Exception, match=reason):
        graded_test(point_model_class=mutant, **params)


@pytest.mark.slow  # trains a point model at the official budget
def test_a_linear_point_model_fails_level0(monkeypatch):
    """Trained at the official budget of configs/moons.yaml (seconds), its samples are a cloud, not the moons."""
    torch.manual_seed(0)
    trained = trained_run("moons", PointIsLinear(2))
    monkeypatch.setattr(test_points, "trained_model", lambda config, model_class, source: trained)
    with pytest.raises(AssertionError, match="Chamfer distance"):
        test_points.test_moons_samples_have_the_datas_shape(point_model_class=PointIsLinear, source=STUDENT)
