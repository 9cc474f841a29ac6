"""Sample-quality metrics: the Frechet distance, the shipped classifiers, and verdicts on known image sets."""

import json
from contextlib import nullcontext

import pytest
import torch
from torchvision.transforms.functional import gaussian_blur

from calibration.calibrate import Memoriser
from src.harness.policy import EVAL_SAMPLES, THRESHOLDS
from src.harness.run.data import to_model_range
from src.harness.run.objective import NoisePrediction
from src.harness.run.quality import (CLASSIFIERS, classifier_card, classifier_path, copy_ratio, edge_ratio, evaluate,
                                     fd_ratio, frechet_distance, judge, load_classifier, nearest_distances,
                                     sample_quality)
from src.harness.run.schedule import NoiseSchedule
from tests.graded.runs import REFERENCE_SCORES
from tests.harness.helpers import SHARED_FOLDERS, shared_data

MIN_ACCURACY = {"fashion_mnist": 0.92, "cifar10": 0.80}


def test_frechet_distance_matches_closed_forms():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(20000, 3, generator=g, dtype=torch.float64)
    assert frechet_distance(a, a) == pytest.approx(0, abs=1e-9)
    # N(0, I) against N(m, 4I) in 3-D: |m|^2 + 3 * (1 + 4 - 2 * 2) = |m|^2 + 3
    b = 2 * torch.randn(20000, 3, generator=g, dtype=torch.float64) + torch.tensor([1.0, 0.0, 2.0], dtype=torch.float64)
    assert frechet_distance(a, b) == pytest.approx(5 + 3, rel=0.03)


@pytest.mark.parametrize("dataset", [d for d in CLASSIFIERS if classifier_path(d).exists()])
def test_shipped_classifier_loads_safely_and_met_its_accuracy(dataset):
    card = classifier_card(dataset)
    assert card["test_accuracy"] >= MIN_ACCURACY[dataset] and card["test_images"] == 10_000
    classifier = load_classifier(dataset)  # weights_only=True inside
    channels = CLASSIFIERS[dataset][0]
    assert classifier(torch.zeros(2, channels, 28, 28)).shape == (2, 10)


@pytest.mark.parametrize("dataset", SHARED_FOLDERS)
def test_verdicts_on_known_image_sets(dataset):
    data = shared_data(dataset)
    real = to_model_range(data.val)
    n = EVAL_SAMPLES

    def verdict(images):
        return judge(sample_quality(images, real, dataset, data.classes), dataset)

    assert verdict(real[2 * n:3 * n]) == [], "real test images must pass"
    noise = torch.randn(n, *real.shape[1:], generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    assert any("Frechet" in reason for reason in verdict(noise))
    one_class = to_model_range(data.train[data.train_labels == 1][:n])
    assert any("classes" in reason for reason in verdict(one_class)), "one class repeated must fail"
    assert verdict(gaussian_blur(real[2 * n:3 * n], kernel_size=7, sigma=1.5)), "blurred images must fail"
    quality = sample_quality(real[2 * n:3 * n], real, dataset, data.classes)
    assert quality == sample_quality(real[2 * n:3 * n], real, dataset, data.classes), "deterministic"
    assert sum(quality["class_histogram"].values()) == pytest.approx(1, abs=1e-3)


def test_copy_ratio_is_near_zero_for_copies_and_near_one_for_new_images():
    draw = torch.Generator().manual_seed(0)
    train = torch.randint(0, 256, (2000, 1, 8, 8), generator=draw, dtype=torch.uint8)
    held_out = torch.randint(0, 256, (256, 1, 8, 8), generator=draw, dtype=torch.uint8).float() / 127.5 - 1
    new = torch.randint(0, 256, (256, 1, 8, 8), generator=draw, dtype=torch.uint8).float() / 127.5 - 1
    copies = train[:256].float() / 127.5 - 1
    assert copy_ratio(copies, held_out, train) < 0.01
    assert copy_ratio(new, held_out, train) == pytest.approx(1, abs=0.1)
    assert nearest_distances(copies + 0.1, train).max() == pytest.approx(0.1, abs=1e-5), "RMS distance, in pixels"


@pytest.mark.parametrize("bars", sorted(bars for bars, limits in THRESHOLDS.items() if "copy_ratio" in limits))
def test_copies_of_training_images_fail_whatever_else_they_score(bars):
    quality = json.loads(REFERENCE_SCORES.read_text())["fashion_mnist"]["quality"] | {"copy_ratio": 0.0}
    reasons = judge(quality, bars)
    assert any("copies of training images" in reason for reason in reasons), reasons


def test_a_memoriser_draws_copies_that_fail(tmp_path):
    """The route of a submission that stores 3,000 training images and returns the exact denoiser of that set: its
    samples look real (the other bars pass them) and are caught as copies."""
    data = shared_data("fashion_mnist")
    stored = to_model_range(data.train[:3000])
    objective = NoisePrediction(NoiseSchedule(1000))
    quality = evaluate(Memoriser(stored, objective.schedule), objective, to_model_range(data.val), "fashion_mnist",
                       data.classes, nullcontext, data.train, num_samples=64)
    reasons = judge(quality, "fashion_mnist")
    assert quality["copy_ratio"] < 0.01 and len(reasons) == 1 and "copies of training images" in reasons[0], reasons


@pytest.mark.parametrize("dataset", sorted(d for d, limits in THRESHOLDS.items() if "fd_ratio" in limits))
def test_recorded_reference_passes_its_thresholds_with_margin(dataset):
    """Guards the calibration: thresholds changed without a new reference run must still pass the reference."""
    quality, limits = json.loads(REFERENCE_SCORES.read_text())[dataset]["quality"], THRESHOLDS[dataset]
    assert quality["classes_covered"] >= limits["classes_covered"]
    # The bars leave the recorded reference 25% of room, for the spread of a fresh reference run.
    assert fd_ratio(quality) * 1.25 <= limits.get("reference_fd_ratio", limits["fd_ratio"]), "no margin: recalibrate"
    if "edge_strength" in quality:  # CIFAR-10's recorded run predates the edge statistic (its README grid: 0.99x)
        low, high = limits["edge_ratio"]
        assert low * 1.25 <= edge_ratio(quality) <= high / 1.25, "no margin: recalibrate"
