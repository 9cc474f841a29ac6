"""The calibration behind Level 9's bars: `uv run python -m calibration.steering` (minutes on a CPU).

Steers every Level 1 generator as the level's trained-run tests do (configs/fashion_mnist_steer.yaml's graded
scales, 20 steered DDIM steps, fixed seed): the reference's recorded run, the zoo's student-style runs (train them
first with `python -m calibration.train_zoo fashion_mnist`), an untrained and a barely trained network; each with
the reference's steered sampler, the reference and the zoo's also with an independently written one
(tests/harness/submissions/steer.py), and the reference run with the broken samplers a student's work resembles.
The class-steering test grades only a run that passes Level 1's recognisable bar (read off Level 1's calibration
grids here): on a network that draws no garments, steering fools the classifier without drawing its class.

Stores the inpainted images (in order) and the class-steered samples (one row per class) in
calibration/grids/fashion_mnist_steer/<key>-{inpainting,class}.png, and prints a Markdown table of the scores, the
grader's verdict and the verdict of a person who looked at the grids (calibration/verdicts.json). `--rescore`
scores the stored grids, which is what tests/harness/test_calibration.py checks; `--only KEY ...` draws those
generators alone.
"""

import argparse
import json
from functools import lru_cache, partial
from pathlib import Path

import torch
from omegaconf import OmegaConf

from calibration.calibrate import GRIDS, PADDING, VERDICTS, load_samples, score_grid, trained_models, weak_networks
from src.harness.loading import REFERENCE
from src.harness.paths import REFERENCE_RUNS
from src.harness.policy import STEERED_AGREEMENT, STEERED_INPAINTING_KEPT_CLASS, STEERED_INPAINTING_RMSE
from src.harness.run.config import Config, official_config
from src.harness.run.data import load_data, to_model_range
from src.harness.run.figures import image_grid
from src.harness.run.guidance import class_agreement
from src.harness.run.kinds import build_model
from src.harness.run.objective import make_objective
from src.harness.run.quality import judge
from src.harness.run.runtime import Runtime
from src.harness.run.steering import class_steered, inpainted, inpainting_scores, steering_inputs
from src.harness.run.train import load_checkpoint
from tests.harness.helpers import submission

CONFIG = "fashion_mnist_steer"
BARELY_TRAINED_STEPS = 60
SHAPE = (1, 28, 28)


def _flipped(steered_sample):
    """A sampler that climbs down the goal: the reference's with the gradient's sign flipped (a negative scale)."""
    def sample(model, schedule, shape, goal, scale=1.0, **options):
        return steered_sample(model, schedule, shape, goal, scale=-scale, **options)
    return sample


def models(data):
    """(key, description, Level 1 network in eval mode) of every Level 1 run that can be steered now."""
    level1 = official_config("fashion_mnist")
    recorded = REFERENCE_RUNS / "fashion_mnist.pt"
    trained = list(trained_models("fashion_mnist", level1))
    if not any(key == "reference" for key, _, _ in trained) and recorded.exists():
        run_cfg = OmegaConf.merge(OmegaConf.structured(Config), load_checkpoint(recorded)["config"])
        model = build_model(run_cfg, REFERENCE)
        model.load_state_dict(load_checkpoint(recorded)["ema"]["model"])
        trained.insert(0, ("reference", "reference, the recorded run of `configs/fashion_mnist.yaml`", model.eval()))
    yield from trained
    yield from weak_networks(level1, data)


def generators(data):
    """(key, description, model, steered sampler): each model with the reference's sampler, the reference and the
    weakest zoo network with the independently written one, and the reference with broken samplers."""
    reference_sampler = REFERENCE.module("steer").steered_sample
    submitted = submission("steer").steered_sample
    for key, description, model in models(data):
        yield key, description, model, reference_sampler
        if key == "reference" or key.startswith("zoo-"):
            yield f"{key}-submitted", f"{description}, steered by tests/harness/submissions/steer.py", model, submitted
        if key == "reference":
            yield "sign_flipped", "reference run, the gradient's sign flipped", model, _flipped(reference_sampler)
            yield "unsteered", "reference run, scale ignored (never steers)", model, partial(_unsteered,
                                                                                             reference_sampler)


def _unsteered(steered_sample, model, schedule, shape, goal, scale=1.0, **options):
    return steered_sample(model, schedule, shape, goal, scale=0.0, **options)


def grid_path(key: str, what: str) -> Path:
    return GRIDS / CONFIG / f"{key}-{what}.png"


@lru_cache
def inputs():
    """(the official steering config, then steering_inputs: the images to inpaint, their labels, the class labels)."""
    steering = official_config(CONFIG).steering
    return steering, *steering_inputs(steering, load_data(official_config("fashion_mnist").data))


def draw(key: str, model, steered_sample, autocast) -> None:
    """Store the inpainted images and the class-steered samples (class-major, one row per class) as grids."""
    steering, images, _, class_labels = inputs()
    schedule = make_objective(official_config("fashion_mnist").diffusion).schedule
    model.requires_grad_(False)
    with autocast():
        painted = inpainted(steered_sample, model, schedule, images, steering.inpainting_scale, steering.steps)
        steered = class_steered(steered_sample, model, schedule, SHAPE, class_labels, "fashion_mnist",
                                steering.class_scale, steering.steps)
    order = torch.sort(class_labels, stable=True).indices
    grid_path(key, "inpainting").parent.mkdir(parents=True, exist_ok=True)
    image_grid(painted, padding=PADDING, columns=len(images)).convert("L").save(grid_path(key, "inpainting"))
    image_grid(steered[order], padding=PADDING, columns=steering.per_class).convert("L").save(grid_path(key, "class"))


def level1_key(key: str) -> str:
    """The generator of Level 1's calibration (calibration/grids/fashion_mnist/<key>.png) whose network `key`
    steers."""
    return "reference" if key in ("sign_flipped", "unsteered") else key.removesuffix("-submitted")


@lru_cache
def level1_recognisable(key: str) -> bool:
    """Whether Level 1's recognisable bar passes the stored samples of Level 1's generator `key`: the class-steering
    test grades only a run that passes it."""
    data = load_data(official_config("fashion_mnist").data)
    return not judge(score_grid("fashion_mnist", key, to_model_range(data.val), data.classes, data.train),
                     "fashion_mnist")


def stored_scores(key: str) -> dict:
    """The graded scores of a generator's stored grids: inpainting_scores, the class agreement, and whether the
    network it steers passes Level 1's recognisable bar."""
    steering, images, labels, class_labels = inputs()
    painted = load_samples(grid_path(key, "inpainting"), 1, 28, len(images))
    steered = load_samples(grid_path(key, "class"), 1, 28, len(class_labels))
    return inpainting_scores(painted, images, labels, "fashion_mnist") | {
        "agreement": class_agreement(steered, torch.sort(class_labels).values, "fashion_mnist"),
        "level1_recognisable": level1_recognisable(level1_key(key))}


def grader_verdicts(scores: dict) -> dict:
    """{"inpainting": pass/fail, "classes": pass/fail}: the two trained-run tests of Level 9 on these scores."""
    inpainting = (scores["known_rmse"] <= STEERED_INPAINTING_RMSE
                  and scores["kept_class"] >= STEERED_INPAINTING_KEPT_CLASS)
    classes = scores["level1_recognisable"] and scores["agreement"] >= STEERED_AGREEMENT
    return {"inpainting": "pass" if inpainting else "fail", "classes": "pass" if classes else "fail"}


def human_verdicts() -> dict:
    """{generator key: {"description", "inpainting", "classes", "why"}}: what a person saw in the grids
    ("inpainting": pass where the drawn bottom halves complete the kept tops into garments of the same kind;
    "classes": pass where the steered samples lean towards their rows' classes)."""
    return json.loads(VERDICTS.read_text()).get(CONFIG, {})


def calibration_table(rescore: bool = False, only: list[str] = ()) -> str:
    verdicts = human_verdicts()
    if rescore:
        drawn = [(key, entry["description"]) for key, entry in verdicts.items()]
    else:
        cfg = official_config("fashion_mnist")
        autocast = Runtime.choose("cpu", cfg.training.precision).autocast
        drawn = []
        for key, description, model, steered_sample in generators(load_data(cfg.data)):
            if not only or key in only:
                draw(key, model, steered_sample, autocast)
                drawn.append((key, description))
    rows = ["| generator | known-half RMSE | class kept | class agreement | Level 1 recognisable | person (inpainting, "
            "classes) | grader |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for key, description in drawn:
        scores = stored_scores(key)
        person = verdicts.get(key, {})
        grader = grader_verdicts(scores)
        rows.append(f"| {description} | {scores['known_rmse']:.3f} | {scores['kept_class']:.0%} | "
                    f"{scores['agreement']:.0%} | {'yes' if scores['level1_recognisable'] else 'no'} | "
                    f"{person.get('inpainting', '?')}, {person.get('classes', '?')} | "
                    f"{grader['inpainting']}, {grader['classes']} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rescore", action="store_true", help="score the stored grids instead of drawing samples")
    parser.add_argument("--only", nargs="*", default=[], metavar="KEY", help="draw these generators only")
    arguments = parser.parse_args()
    print(calibration_table(arguments.rescore, arguments.only))
