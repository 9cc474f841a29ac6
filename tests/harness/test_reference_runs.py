"""The reference's recorded runs (src/solution/runs/) are what the current reference trains, and the suite's
retraining fits CI.

`pytest --solution` grades the levels on these recordings instead of training five reference runs on a fresh
clone. That proves as much as training them did because:
- each recording was trained by the current reference code and recipe (the fingerprint and config main.py wrote
  into it; any change to src/solution/ or to a config's training settings fails here until it is retrained and
  recorded again);
- its recorded scores (src/harness/reference_scores.json, what the student release grades against) are its own;
- the runs the levels mark `retrained_in_ci` (Level 1's, the canonical one) are trained from scratch here, so a
  change to the harness's training loop that moves the reference's result fails here too.
"""

import os

import pytest

from src.harness.levels import (CI_TRAINING_BUDGET_MINUTES, FASHION_MNIST, LEVELS, Level, TrainedRun, over_budget,
                                trained_runs)
from src.harness.loading import REFERENCE
from src.harness.paths import ROOT
from src.harness.policy import bars_of
from src.harness.run.config import official_config
from src.harness.run.data import DataNotFoundError
from src.harness.run.quality import judge
from src.harness.run.train import load_checkpoint
from tests.graded.runs import (RECORD_COMMAND, provenance_problem, recorded_reference, reference_run_path,
                               reference_validation_loss)

RECORDED = sorted(config for config, run in trained_runs().items() if run.recorded)
RETRAINED = sorted(config for config, run in trained_runs().items() if run.retrained_in_ci)
# A fresh reference run's validation loss lands within this of its recording: bfloat16 against float32 training, and
# another CPU, move it by about 2% (the Fashion-MNIST run: 0.0431 on a Zen 5 in float32, 0.0431 on a Sapphire Rapids
# in bfloat16).
RETRAINED_VAL_LOSS_TOLERANCE = 0.05


@pytest.mark.parametrize("config", RECORDED)
def test_each_graded_run_is_recorded_by_the_current_reference(config):
    path = reference_run_path(config)
    assert path.exists(), (f"no recorded reference run for {config}: train it with `uv run python main.py --config "
                           f"configs/{config}.yaml --solution` and record it with `{RECORD_COMMAND} {config}`")
    problem = provenance_problem(load_checkpoint(path), official_config(config), source=REFERENCE)
    assert problem is None, (f"{path.relative_to(ROOT)} is stale: it {problem}; train it again with `uv run python "
                             f"main.py --config configs/{config}.yaml --solution --overwrite` and record it with "
                             f"`{RECORD_COMMAND} {config}`")


@pytest.mark.parametrize("config", RECORDED)
def test_recorded_runs_hold_only_what_grading_needs(config):
    state = load_checkpoint(reference_run_path(config))
    latent = {"autoencoder", "latent_scale"} if official_config(config).latent.channels else set()  # Level 8's
    assert set(state) == {"ema", "step", "images_seen", "total_steps", "config", "budget", "solution",
                          "model_fingerprint"} | latent, (
        "record runs with tests.graded.record --runs: EMA weights, no optimiser")
    assert os.path.getsize(reference_run_path(config)) < 8e6


@pytest.mark.slow  # evaluates a recorded run on 1,000 validation images
def test_recorded_validation_loss_is_the_recorded_runs():
    """Level 2 in the student release compares with this number: it must be the recorded run's own."""
    try:
        loss = reference_validation_loss()
    except DataNotFoundError as err:  # offline, with no copy of Fashion-MNIST: nothing to measure it on
        pytest.skip(str(err))
    assert loss == pytest.approx(recorded_reference("fashion_mnist")["val_loss"], rel=1e-3), (
        f"src/harness/reference_scores.json is not the recorded run's: `{RECORD_COMMAND} fashion_mnist` rewrites both")


def test_the_suites_retraining_fits_its_budget():
    reasons = over_budget()
    assert not reasons, "; ".join(reasons)
    assert RETRAINED == ["fashion_mnist"], "the canonical reference run is Level 1's"


def test_a_level_whose_retraining_costs_too_much_fails_the_budget():
    dear = Level("level99", "a throw-away level", (), (TrainedRun("dear", fp32_minutes=15.0, bf16_minutes=0.05,
                                                                  retrained_in_ci=True),))
    reasons = over_budget((*LEVELS, dear))
    assert len(reasons) == 1 and "fp32" in reasons[0] and "dear (15 min)" in reasons[0]
    cheap = Level("level99", "a throw-away level", (), (TrainedRun("cheap", fp32_minutes=0.5, bf16_minutes=0.2),))
    assert not over_budget((*LEVELS, cheap)), "a run graded on its recording alone costs CI nothing"
    assert over_budget(budget={"bf16": FASHION_MNIST.bf16_minutes - 0.1}), "the budget binds"
    assert CI_TRAINING_BUDGET_MINUTES["fp32"] <= 20


@pytest.mark.slow
@pytest.mark.timeout(3600)
@pytest.mark.parametrize("config", RETRAINED)
def test_a_fresh_reference_run_matches_its_recording(config, fresh_reference_run):
    """Trains the reference from scratch (minutes: src/harness/levels.py; it starts when the tests are collected, see
    conftest.py) and compares it with its recording."""
    metrics = fresh_reference_run.metrics(timeout=3000)
    recorded = recorded_reference(config)
    assert metrics["val_loss"] == pytest.approx(recorded["val_loss"], rel=RETRAINED_VAL_LOSS_TOLERANCE), (
        f"a fresh reference run of {config} reaches validation loss {metrics['val_loss']:.4f}, its recording "
        f"{recorded['val_loss']:.4f}: if the change to training is meant, train and record it again "
        f"(`{RECORD_COMMAND} {config}`)")
    reasons = judge(metrics["quality"], bars_of(official_config(config)))
    assert not reasons, f"a fresh reference run of {config} fails its level: {'; '.join(reasons)}"
