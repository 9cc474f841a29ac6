"""Levels 1 and 3: samples of your trained model are recognisable, and as close to the data as the reference's.

Level 1 splits its points: 3 for recognisable samples (enough classes, a Frechet distance within a loose
bar), 2 for samples as close to the data as the reference's (a tight bar). Level 3 has the loose bar only (and so
has Level 7's Fashion-MNIST run, graded in test_flow.py).
The bars were set on independently written student models trained at the official budget (README,
"Sample quality"), and tests/harness/test_calibration.py keeps them agreeing with a person's verdicts.
"""

import pytest

from src.harness.run.quality import judge, judge_against_reference
from tests.graded.runs import assert_samples_pass


@pytest.mark.level1
@pytest.mark.points(3)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_fashion_mnist_samples_are_recognisable(model_class, source):
    assert_samples_pass(judge, "fashion_mnist", model_class, source)


@pytest.mark.level1
@pytest.mark.points(2)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_fashion_mnist_samples_are_as_good_as_the_references(model_class, source):
    assert_samples_pass(judge_against_reference, "fashion_mnist", model_class, source)


@pytest.mark.level3
@pytest.mark.points(5)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(600)
def test_cifar10_samples_are_recognisable(model_class, source):
    assert_samples_pass(judge, "cifar10", model_class, source)
