"""The calibration behind Level 6's bars: `uv run python -m calibration.guidance` (minutes on a CPU).

Scores every generator of class-conditional Fashion-MNIST samples as the level tests do: the reference run of
configs/fashion_mnist_cfg.yaml, the zoo's student-style networks trained with it (train them first with
`python -m calibration.train_zoo fashion_mnist_cfg`), and generators that a student's broken work resembles.
Each draws AGREEMENT_PER_CLASS samples of every class at w = 0, 1, 3 and 7 with the reference's guided sampler
(fixed seed); the sets are stored as grids, one row per class, in calibration/grids/fashion_mnist_cfg/<key>-w<w>.png.
Prints a Markdown table of the class agreement per scale, the grader's verdict and the verdict of a person who
looked at the grids (calibration/verdicts.json). `--rescore` scores the stored grids, which is what
tests/harness/test_calibration.py checks.
"""

import argparse
import json
from pathlib import Path

import torch

from calibration.calibrate import GRIDS, PADDING, VERDICTS, load_samples, trained_models, weak_networks
from src.harness.loading import REFERENCE
from src.harness.policy import AGREEMENT_PER_CLASS, GUIDANCE_SCALES, GUIDED_AGREEMENT, UNGUIDED_AGREEMENT
from src.harness.run.conditioning import conditioning_of
from src.harness.run.config import official_config
from src.harness.run.data import load_data
from src.harness.run.figures import image_grid
from src.harness.run.guidance import class_agreement, guidance_scores
from src.harness.run.objective import make_objective
from src.harness.run.runtime import Runtime

CONFIG = "fashion_mnist_cfg"
BARELY_TRAINED_STEPS = 60
SHAPE = (1, 28, 28)


def generators(cfg, data):
    """(key, description, model) for every class-conditional model that can be scored now."""
    reference = None
    for key, description, model in trained_models(CONFIG, cfg):
        reference = model if key == "reference" else reference
        yield key, description, model
    yield from weak_networks(cfg, data, train_labels=data.train_labels, conditioning=conditioning_of(cfg))
    if reference is not None:
        yield "ignores_labels", "labels never reach the network (the reference, given the null label)", \
            IgnoresLabels(reference)


class IgnoresLabels(torch.nn.Module):
    """A class-conditional network that always gets the null label: what a student's model that drops y draws."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, x, t, y=None):
        return self.model(x, t, None)


def grid_path(key: str, scale: float) -> Path:
    return GRIDS / CONFIG / f"{key}-w{scale:g}.png"


def stored_labels(num_classes: int) -> torch.Tensor:
    """The labels of a stored grid: one row of AGREEMENT_PER_CLASS samples per class."""
    return torch.arange(num_classes).repeat_interleave(AGREEMENT_PER_CLASS)


def draw(key: str, model, num_classes: int, autocast) -> None:
    """Store the model's guided samples at every scale as grids, one row per class."""
    guided_sample = REFERENCE.module("sampler").guided_sample
    schedule = make_objective(official_config(CONFIG).diffusion).schedule
    scores = guidance_scores(guided_sample, model, schedule, SHAPE, num_classes, "fashion_mnist", autocast)
    for scale, entry in scores.items():
        order = torch.sort(entry["labels"], stable=True).indices  # class-major: one row per class
        path = grid_path(key, scale)
        path.parent.mkdir(parents=True, exist_ok=True)
        image_grid(entry["samples"][order], padding=PADDING, columns=AGREEMENT_PER_CLASS).convert("L").save(path)


def stored_agreement(key: str, num_classes: int) -> dict[float, float]:
    """{w: class agreement} of a generator's stored grids."""
    labels = stored_labels(num_classes)
    return {scale: class_agreement(load_samples(grid_path(key, scale), 1, 28, len(labels)), labels, "fashion_mnist")
            for scale in GUIDANCE_SCALES}


def grader_verdict(agreement: dict[float, float]) -> str:
    """"pass" when the trained-run tests of Level 6 would both pass on these agreements."""
    default = official_config(CONFIG).conditioning.guidance_scale
    return "pass" if agreement[default] >= GUIDED_AGREEMENT and agreement[0.0] <= UNGUIDED_AGREEMENT else "fail"


def human_verdicts() -> dict:
    """{generator key: {"description", "guided", "why"}}: what a person saw in the grids ("pass": at w = 3 the rows
    show their classes, and w = 0 draws garments of no particular class)."""
    return json.loads(VERDICTS.read_text()).get(CONFIG, {})


def calibration_table(rescore: bool = False) -> str:
    cfg = official_config(CONFIG)
    data = load_data(cfg.data)
    num_classes = len(data.classes)
    verdicts = human_verdicts()
    if rescore:
        drawn = [(key, entry["description"]) for key, entry in verdicts.items()]
    else:
        autocast = Runtime.choose("cpu", cfg.training.precision).autocast
        drawn = []
        for key, description, model in generators(cfg, data):
            draw(key, model, num_classes, autocast)
            drawn.append((key, description))
    rows = ["| generator | " + " | ".join(f"w = {w:g}" for w in GUIDANCE_SCALES) + " | person | grader |",
            "| --- |" + " --- |" * (len(GUIDANCE_SCALES) + 2)]
    for key, description in drawn:
        agreement = stored_agreement(key, num_classes)
        rows.append(f"| {description} | " + " | ".join(f"{agreement[w]:.0%}" for w in GUIDANCE_SCALES)
                    + f" | {verdicts.get(key, {}).get('guided', '?')} | {grader_verdict(agreement)} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rescore", action="store_true", help="score the stored grids instead of drawing samples")
    print(calibration_table(parser.parse_args().rescore))
