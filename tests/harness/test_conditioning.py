"""Class conditioning (Level 6): the harness's label dropout, its training loop and its budget record."""

import pytest
import torch
from omegaconf import OmegaConf

from src.harness.loading import REFERENCE
from src.harness.run.conditioning import ClassConditional, Unconditional, conditioning_of
from src.harness.run.config import ConfigError, official_config
from src.harness.run.data import load_data
from src.harness.run.kinds import trained_code
from src.harness.run.train import budget_of, load_checkpoint, train
from tests.graded.runs import provenance_problem
from tests.harness.helpers import cpu, smoke_config, smoke_training


def test_label_dropout_replaces_its_share_of_labels_by_the_null_label():
    labels = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    y = ClassConditional(10, 0.1).draw(labels, torch.Generator().manual_seed(1))
    dropped = y == 10
    assert abs(dropped.double().mean().item() - 0.1) < 0.01
    assert torch.equal(y[~dropped], labels[~dropped]), "the labels that are kept must be the images' own"
    again = ClassConditional(10, 0.1).draw(labels, torch.Generator().manual_seed(1))
    assert torch.equal(y, again), "a pure function of the generator: a resumed run sees the same labels"


def test_an_unconditional_run_draws_no_extra_random_numbers():
    """Runs without labels keep the random numbers (and so the recorded results) they had before Level 6."""
    generator = torch.Generator().manual_seed(0)
    before = generator.get_state()
    assert Unconditional().draw(torch.zeros(4, dtype=torch.long), generator) is None
    assert torch.equal(generator.get_state(), before)


class LabelSpy(torch.nn.Module):
    """A tiny class-conditional network that remembers the labels it was trained with."""

    def __init__(self, in_channels, image_size, num_classes):
        super().__init__()
        self.embedding = torch.nn.Embedding(num_classes + 1, in_channels)
        self.seen = []

    def forward(self, x, t, y=None):
        self.seen.append(y.clone())
        return x * 0 + self.embedding(y)[:, :, None, None]


def test_training_gives_the_network_each_images_label_or_the_null_label(tmp_path):
    cfg, _, objective, images = smoke_training(tmp_path, "training.max_steps=40", "conditioning.kind=class",
                                               "training.precision=fp32")
    data = load_data(cfg.data)
    model = LabelSpy(1, 16, len(data.classes))
    train(cfg, model, objective, images, cpu(cfg), tmp_path / "c.pt", train_labels=data.train_labels,
          conditioning=conditioning_of(cfg))
    seen = torch.cat(model.seen)
    null = len(data.classes)
    assert seen.min() >= 0 and seen.max() == null and len(seen) == 40 * cfg.data.batch_size
    assert 0.05 < (seen == null).double().mean().item() < 0.15, "about label_dropout = 10% null labels"
    assert load_checkpoint(tmp_path / "c.pt")["budget"]["conditioning.label_dropout"] == 0.1


def test_a_run_with_another_label_dropout_does_not_count():
    official = official_config("fashion_mnist_cfg")
    state = {"budget": budget_of(official) | {"conditioning.label_dropout": 0.0}, "step": 1000,
             "images_seen": 32_000}
    assert "conditioning.label_dropout=0.0" in provenance_problem(state, official, source=REFERENCE)


def test_a_checkpoint_older_than_level_6_still_counts_for_level_1():
    """Its budget lacks the conditioning keys, which read as their defaults: no conditioning."""
    official = official_config("fashion_mnist")
    budget = {key: value for key, value in budget_of(official).items() if not key.startswith("conditioning.")}
    state = {"budget": budget, "step": 1875, "images_seen": 60_000, "solution": True,
             "model_fingerprint": REFERENCE.fingerprint(trained_code(official)),
             "config": OmegaConf.to_container(official)}
    assert provenance_problem(state, official, source=REFERENCE) is None


@pytest.mark.parametrize("overrides, message", [
    (["diffusion.objective=flow", "sampling.sampler=heun"], "objective=flow"),
    (["data.name=moons", "data.hflip=false", "data.num_train=2000", "data.num_val=2000"], "2-D points"),
])
def test_class_conditioning_is_refused_where_it_cannot_work(tmp_path, overrides, message):
    with pytest.raises(ConfigError, match=message):
        smoke_config(tmp_path, "conditioning.kind=class", *overrides)
