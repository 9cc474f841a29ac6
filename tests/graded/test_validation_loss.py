"""Level 2: the validation loss of your Level 1 run, at most the reference's (same budget, same images)."""

import pytest

from src.harness.loading import reference_available
from tests.graded.runs import (command, recorded_reference, reference_run_path, reference_validation_loss,
                               student_validation_loss)


@pytest.mark.level2
@pytest.mark.points(5)
@pytest.mark.slow  # evaluates a trained run
@pytest.mark.timeout(3600)
def test_validation_loss_at_most_the_references(model_class, source, record_property):
    loss = reference_validation_loss() if source.reference else student_validation_loss(model_class, source)
    record_property("validation_loss", loss)  # Gradescope's leaderboard (src/harness/instructor/autograder.py)
    if reference_available() and reference_run_path("fashion_mnist").exists():
        reference = reference_validation_loss()
        measured_by = "the reference's recorded run in src/solution/runs/"
    else:
        reference = recorded_reference("fashion_mnist")["val_loss"]
        measured_by = "the recorded reference score (src/harness/reference_scores.json)"
    assert loss <= reference, (
        f"validation loss {loss:.4f}, the reference's {reference:.4f} ({measured_by}). Same budget, lower loss: "
        f"improve src/model.py and train again with `{command('fashion_mnist', source)} --overwrite`")
