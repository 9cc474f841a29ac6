"""The calibration behind the bars of Levels 1, 3 and 7: `uv run python -m calibration.calibrate fashion_mnist`.

The first argument names a graded image run's config: fashion_mnist (Level 1), fashion_mnist_flow (Level 7: the
same network trained with flow matching) or cifar10 (Level 3). Config overrides follow it, e.g.
`... calibrate cifar10 data.verify_md5=false` for a rebuilt mirror.

Draws the evaluation samples (256, the objective's harness sampler, seed 0, as the level tests do) of every
generator: real images, the reference run, the zoo's student-style runs (train them first with
`python -m calibration.train_zoo`), and generators that a student's broken work resembles. Stores each set as a grid in calibration/grids/<config>/
(the meta-test tests/harness/test_calibration.py re-scores those files), and prints a Markdown table of the
metrics, the grader's verdict and the verdict of a person who looked at the grid (calibration/verdicts.json).
`--rescore` skips drawing and scores the stored grids, which is what the meta-test checks.
"""

import argparse
import importlib
import json
import tempfile
from pathlib import Path

import numpy
import torch
from omegaconf import OmegaConf
from PIL import Image
from torchvision.transforms.functional import gaussian_blur

from calibration.train_zoo import ZOO_CONFIGS, zoo_run_dir
from calibration.zoo import ZOO_MODELS
from src.harness.loading import REFERENCE
from src.harness.paths import ROOT
from src.harness.policy import EVAL_SAMPLES, THRESHOLDS, bars_of
from src.harness.run.conditioning import conditioning_of
from src.harness.run.config import official_config, output_dir
from src.harness.run.data import DATASETS, load_data, to_model_range
from src.harness.run.figures import image_grid
from src.harness.run.kinds import build_model
from src.harness.run.objective import make_objective
from src.harness.run.quality import edge_ratio, evaluation_samples, fd_ratio, judge, judge_against_reference, sample_quality
from src.harness.run.runtime import Runtime
from src.harness.run.train import load_checkpoint, train

GRIDS = ROOT / "calibration" / "grids"
VERDICTS = ROOT / "calibration" / "verdicts.json"
BARELY_TRAINED_STEPS = 60
MEMORISED = 3000  # training images the memoriser stores, as the route in issue #29 did
PADDING = 2  # pixels between the images of a stored grid


def generators(config: str, cfg, data):
    """(key, description, images (N, C, H, W) in [-1, 1]) for every generator that can be drawn now."""
    runtime = Runtime.choose("cpu", cfg.training.precision)
    objective = make_objective(cfg.diffusion, source=REFERENCE)  # the zoo trains with the reference's src/flow.py
    shape = (EVAL_SAMPLES, *DATASETS[cfg.data.name].shape(cfg.data))
    size = shape[-1]

    def model_samples(model):
        return evaluation_samples(model, objective, shape, runtime.autocast)

    # Real images outside the first 2N, which sample_quality compares against.
    held_out_real = to_model_range(data.val[2 * EVAL_SAMPLES:3 * EVAL_SAMPLES])
    yield "real", "real test images", held_out_real
    reference = None
    for key, description, model in trained_models(config, cfg):
        samples = model_samples(model)
        reference = samples if key == "reference" else reference
        yield key, description, samples
    for key, description, model in weak_networks(cfg, data, objective):
        yield key, description, model_samples(model)
    yield "noise", "pure noise", torch.randn(shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    yield "one_class", f"one class repeated (real {data.classes[1]})", _real_of_classes(data, [1])
    yield "few_classes", "mode collapse: three classes (real images)", _real_of_classes(data, [0, 1, 7])
    if cfg.diffusion.objective == "noise":
        stored = to_model_range(data.train[torch.randperm(len(data.train), generator=torch.Generator().manual_seed(0))
                                           [:MEMORISED]])
        yield ("memorised", f"a memoriser: the exact denoiser of {MEMORISED:,} stored training images",
               model_samples(Memoriser(stored, objective.schedule)))
    good = reference if reference is not None else held_out_real
    source = "reference samples" if reference is not None else "real images"
    yield "blurred", f"blurred {source} (Gaussian, sigma 1.5)", gaussian_blur(good, kernel_size=7, sigma=1.5)
    yield "smoothed", f"over-smoothed {source} (Gaussian, sigma 0.8)", gaussian_blur(good, kernel_size=5, sigma=0.8)
    checkerboard = (torch.arange(size)[:, None] + torch.arange(size)[None, :]) % 2 * 2 - 1  # +-1, period 2
    yield ("checkerboard", f"checkerboard artefacts on {source} (amplitude 0.4)",
           (good + 0.4 * checkerboard).clamp(-1, 1))
    yield "wrong_range", f"wrong value range: {source} squeezed into [0, 1]", (good + 1) / 2


class Memoriser(torch.nn.Module):
    """Not a network: the exact noise prediction for data made of `images` alone, (M, C, H, W) in [-1, 1], which the
    sampler turns into copies of them (a submission that stores training images instead of learning)."""

    def __init__(self, images: torch.Tensor, schedule):
        super().__init__()
        self.register_buffer("images", images.flatten(1).float())
        self.register_buffer("abar", schedule.alphas_cumprod.float())

    def forward(self, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        with torch.autocast(x.device.type, enabled=False):
            flat, abar = x.flatten(1).float(), self.abar[t].view(-1, 1)
            # log p(x_t | x_0 = m) = -||x_t - sqrt(abar) m||^2 / (2 (1 - abar)), up to a constant per x_t
            log_weights = (2 * abar.sqrt() * flat @ self.images.T - abar * self.images.pow(2).sum(1)) / (2 * (1 - abar))
            x0 = log_weights.softmax(1) @ self.images
            return ((flat - abar.sqrt() * x0) / (1 - abar).sqrt()).view_as(x).to(x.dtype)


def weak_networks(cfg, data, objective=None, **conditioning):
    """("untrained", ...) and ("barely_trained", ...): (key, description, network in eval mode) of the reference's
    network untrained and trained BARELY_TRAINED_STEPS steps of `cfg` from seed 0, what a student's run that learned
    nothing, or little, resembles. `objective`: the run's (default: its diffusion's); `conditioning`: train's
    train_labels and conditioning, for a class-conditional config."""
    torch.manual_seed(0)
    yield "untrained", "untrained model", build_model(cfg, REFERENCE).eval()
    with tempfile.TemporaryDirectory() as scratch:
        short = OmegaConf.merge(cfg, {"training": {"max_steps": BARELY_TRAINED_STEPS}})
        torch.manual_seed(0)
        model = build_model(short, REFERENCE)
        runtime = Runtime.choose("cpu", cfg.training.precision)
        ema = train(short, model, objective or make_objective(short.diffusion), data.train, runtime,
                    Path(scratch) / "checkpoint.pt", **conditioning).ema.model
        yield "barely_trained", f"barely trained ({BARELY_TRAINED_STEPS} steps)", ema.eval()


def trained_models(config: str, cfg):
    """(key, description, EMA model in eval mode) of the reference run of `config` and of every finished zoo run of
    it (a class-conditional config builds each network with num_classes)."""
    checkpoint = ROOT / output_dir(cfg, source=REFERENCE) / "checkpoint.pt"
    if checkpoint.exists():
        yield "reference", f"reference, `configs/{config}.yaml`", _ema(build_model(cfg, REFERENCE),
                                                                       load_checkpoint(checkpoint))
    sample_shape = DATASETS[cfg.data.name].shape(cfg.data)  # (C, H, W)
    channels, size = sample_shape[0], sample_shape[-1]
    arguments = conditioning_of(cfg).model_arguments
    for member, description in ZOO_MODELS.items():
        state = finished_run(zoo_run_dir(config, member) / "checkpoint.pt")
        if state is not None:
            student_class = importlib.import_module(f"calibration.zoo.{member}").DiffusionModel
            yield f"zoo-{member}", f"student: {description}", _ema(student_class(channels, size, **arguments), state)


def _ema(model, state: dict):
    model.load_state_dict(state["ema"]["model"])
    return model.eval()


def finished_run(checkpoint: Path) -> dict | None:
    """The checkpoint of a run that trained to its last step, or None (with a note) if there is none yet."""
    state = load_checkpoint(checkpoint) if checkpoint.exists() else None
    if state is None or state["step"] != state["total_steps"]:
        print(f"skipped: {checkpoint} is missing or unfinished (calibration.train_zoo trains it)", flush=True)
        return None
    return state


def _real_of_classes(data, classes: list[int]) -> torch.Tensor:
    """EVAL_SAMPLES real training images, drawn in turn from `classes`."""
    per_class = [to_model_range(data.train[data.train_labels == c][:EVAL_SAMPLES]) for c in classes]
    return torch.stack([per_class[i % len(classes)][i // len(classes)] for i in range(EVAL_SAMPLES)])


def save_samples(images: torch.Tensor, path: Path) -> None:
    """The images as one lossless PNG grid (uint8, as every sample is shown), read back by load_samples."""
    path.parent.mkdir(parents=True, exist_ok=True)
    grid = image_grid(images, padding=PADDING)
    (grid.convert("L") if images.shape[1] == 1 else grid).save(path)


def load_samples(path: Path, channels: int, size: int, count: int = EVAL_SAMPLES) -> torch.Tensor:
    """The images of a grid written by save_samples: (count, C, H, W) in [-1, 1]."""
    grid = torch.from_numpy(numpy.array(Image.open(path)))
    grid = grid[None] if grid.ndim == 2 else grid.permute(2, 0, 1)
    columns = (grid.shape[-1] - PADDING) // (size + PADDING)
    tiles = []
    for i in range(count):
        top, left = PADDING + (i // columns) * (size + PADDING), PADDING + (i % columns) * (size + PADDING)
        tiles.append(grid[:channels, top:top + size, left:left + size])
    return to_model_range(torch.stack(tiles))


def human_verdicts(config: str) -> dict:
    """{generator key: {"description", "recognisable", "as_good_as_reference" (each "pass" | "fail"), "why"}}:
    what a person saw in the generator's grid."""
    return json.loads(VERDICTS.read_text())[config]


def grader_verdicts(quality: dict, config: str) -> dict:
    """The grader's verdicts on one set of samples of `config`'s run, in the form of human_verdicts."""
    bars = bars_of(official_config(config))
    recognisable = not judge(quality, bars)
    verdicts = {"recognisable": "pass" if recognisable else "fail"}
    if "reference_fd_ratio" in THRESHOLDS[bars]:
        as_good = recognisable and not judge_against_reference(quality, bars)
        verdicts["as_good_as_reference"] = "pass" if as_good else "fail"
    return verdicts


def score_grid(config: str, key: str, real: torch.Tensor, classes: list[str], train: torch.Tensor) -> dict:
    channels, size = real.shape[1:3]
    return sample_quality(load_samples(GRIDS / config / f"{key}.png", channels, size), real,
                          official_config(config).data.name, classes, train)


def calibration_table(config: str, overrides: list[str] = (), rescore: bool = False) -> str:
    cfg = official_config(config, overrides)
    data = load_data(cfg.data)
    real = to_model_range(data.val)
    verdicts = human_verdicts(config) if VERDICTS.exists() and config in json.loads(VERDICTS.read_text()) else {}
    if rescore:
        drawn = [(key, entry["description"]) for key, entry in verdicts.items()]
    else:
        drawn = []
        for key, description, images in generators(config, cfg, data):
            save_samples(images, GRIDS / config / f"{key}.png")
            drawn.append((key, description))
    rows = ["| generator | classes covered | FD / real-vs-real | edges / real | copies | mean confidence "
            "| recognisable: person, grader | as good as the reference: person, grader |",
            "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for key, description in drawn:
        q = score_grid(config, key, real, data.classes, data.train)
        person, grader = verdicts.get(key, {}), grader_verdicts(q, config)
        cells = [f"{person.get(bar, '?')}, {grader[bar]}" if bar in grader else "-"
                 for bar in ("recognisable", "as_good_as_reference")]
        rows.append(f"| {description} | {q['classes_covered']} | {fd_ratio(q):.1f} | {edge_ratio(q):.2f} | "
                    f"{q['copy_ratio']:.2f} | {q['mean_confidence']:.2f} | {cells[0]} | {cells[1]} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=ZOO_CONFIGS)
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for main.py")
    parser.add_argument("--rescore", action="store_true", help="score the stored grids instead of drawing samples")
    args = parser.parse_args()
    print(calibration_table(args.config, args.overrides, args.rescore))
