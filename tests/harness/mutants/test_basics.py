"""Basics: broken networks each fail a named contract test, and one that does not learn the training test."""

import pytest
import torch

from src.solution.model import DiffusionModel as Reference
from tests.graded import test_model, test_training
from tests.harness.mutants import caught, small


class IgnoresTime(Reference):
    def forward(self, x, t):
        return super().forward(x, torch.zeros_like(t))


class ReturnsItsInput(Reference):
    def forward(self, x, t):
        return x


class ReturnsZeros(Reference):
    def forward(self, x, t):
        return super().forward(x, t) * 0


class WrongShape(Reference):
    def forward(self, x, t):
        return super().forward(x, t)[..., 1:, 1:]


class EmitsNaN(Reference):
    def forward(self, x, t):
        return super().forward(x, t) * float("nan")


class DetachesItsOutput(Reference):
    def forward(self, x, t):
        return super().forward(x, t).detach()


class ReturnsFloat64(Reference):
    def forward(self, x, t):
        return super().forward(x, t).double()


class TooManyParameters(Reference):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.unused = torch.nn.Linear(4000, 4000)


class StoresTrainingImages(Reference):
    """A memoriser's storage: 60,000 images kept as a plain tensor, not a parameter (a lookup, not a network)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.images = torch.zeros(60_000, 1, 28, 28)


class TooFewTimesteps(Reference):
    """An embedding table one row short: t = T-1 is out of range."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.table = torch.nn.Embedding(999, 1)

    def forward(self, x, t):
        return super().forward(x, t) + self.table(t).view(-1, 1, 1, 1)


class PredictsAConstant(torch.nn.Module):
    def __init__(self, in_channels, image_size):
        super().__init__()
        self.bias = torch.nn.Parameter(torch.zeros(in_channels, 1, 1))
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x, t):
        return self.bias.expand_as(x) + 1e-3 * self.scale * torch.cos(t.float()).view(-1, 1, 1, 1) * x


class BreaksInEvalMode(Reference):
    def forward(self, x, t):
        if not self.training:
            raise RuntimeError("only trains")
        return super().forward(x, t)


def caught(mutant, graded_test, reason: str, **params):
    """A row of MODEL_MUTANTS: `graded_test` (given `params`) fails on `mutant`, its message matching `reason`."""
    return pytest.param(mutant, graded_test, params, reason, id=f"{mutant.__name__}-{graded_test.__name__}")


MODEL_MUTANTS = [
    caught(IgnoresTime, test_model.test_output_depends_on_t, "ignores the timestep"),
    caught(ReturnsItsInput, test_model.test_output_depends_on_t, "ignores the timestep"),
    caught(ReturnsZeros, test_model.test_output_depends_on_x, "ignores x"),
    caught(WrongShape, test_model.test_output_shape_equals_input_shape, "returned", dataset="cifar10", batch=3),
    caught(EmitsNaN, test_model.test_output_is_finite, "NaN or inf"),
    caught(DetachesItsOutput, test_model.test_gradients_reach_the_parameters, "no gradient reaches"),
    caught(ReturnsFloat64, test_model.test_output_is_float32, "float64"),
    caught(TooManyParameters, test_model.test_parameter_budget, "budget", dataset="fashion_mnist"),
    caught(StoresTrainingImages, test_model.test_parameter_budget, "in tensors it holds", dataset="fashion_mnist"),
    caught(TooFewTimesteps, test_model.test_first_and_last_timestep_are_accepted, "index out of range"),
    caught(BreaksInEvalMode, test_model.test_works_in_train_and_eval_mode_and_without_grad, "only trains"),
]


@pytest.mark.parametrize("mutant, graded_test, params, reason", MODEL_MUTANTS)
def test_model_mutant_is_caught(mutant, graded_test, params, reason):
    with pytest.raises(Exception, match=reason):
        graded_test(model_class=small(mutant), **params)


def test_a_model_that_does_not_learn_fails_the_training_test():
    with pytest.raises(AssertionError, match="should fall below"):
        test_training.test_loss_decreases(PredictsAConstant)
