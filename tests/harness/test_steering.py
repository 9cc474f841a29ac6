"""Level 9's harness: the goals it ships, and the steering run (configs/fashion_mnist_steer.yaml)."""

import json

import pytest
import torch

from src.harness.paths import ROOT
from src.harness.run.quality import classify, load_classifier
from src.harness.run.steering import ClassGoal, InpaintingGoal, top_half
from tests.harness.helpers import STUB_MODEL, kata_copy, run_main, shared_data


def test_the_inpainting_goal_pulls_the_known_half_only_towards_the_image():
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    x0 = torch.zeros_like(images, requires_grad=True)
    grad, = torch.autograd.grad(InpaintingGoal(images, top_half((1, 8, 8)))(x0).sum(), x0)
    assert torch.equal(grad[..., 4:, :], torch.zeros_like(grad[..., 4:, :])), "the rows to draw must be free"
    assert torch.allclose(grad[..., :4, :], images[..., :4, :]), "the known rows must be pulled towards the image"


def test_the_class_goal_is_the_log_probability_of_each_images_label():
    classifier = load_classifier("fashion_mnist")
    images, labels = torch.rand(4, 1, 28, 28) * 2 - 1, torch.tensor([0, 3, 7, 9])
    probabilities, _ = classify(classifier, images)
    with torch.no_grad():
        goal = ClassGoal(classifier, labels)(images)
    assert torch.allclose(goal.double(), probabilities[torch.arange(4), labels].log(), atol=1e-4)


QUICK_STEERING = ["steering.steps=2", "steering.num_images=3", "steering.per_class=1",
                  "steering.inpainting_scales=[0.0,10.0]", "steering.class_scales=[0.0,3.0]"]


@pytest.mark.slow  # a main.py process: the full suite's
def test_a_steering_run_steers_the_recorded_reference_run(tmp_path):
    shared_data("fashion_mnist")
    result = run_main(ROOT, "--config", "configs/fashion_mnist_steer.yaml", "--solution",
                      f"output.root={tmp_path}", *QUICK_STEERING)
    assert result.returncode == 0, result.stderr[-2000:]
    out = tmp_path / "fashion_mnist_steer-solution"
    assert (out / "inpainting.png").is_file() and (out / "steering.png").is_file()
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["steered_run"].endswith("src/solution/runs/fashion_mnist.pt")
    assert set(metrics["inpainting"]) == {"0.0", "10.0"} and set(metrics["class_agreement"]) == {"0.0", "3.0"}


@pytest.mark.slow  # a main.py process in a copy of the kata: the full suite's
def test_a_steering_run_without_a_trained_run_says_what_to_train(tmp_path):
    kata = kata_copy(tmp_path, model=STUB_MODEL)
    result = run_main(kata, "--config", "configs/fashion_mnist_steer.yaml")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "uv run python main.py --config configs/fashion_mnist.yaml`" in result.stderr, result.stderr
