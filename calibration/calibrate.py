"""The calibration table behind the L1/L3 thresholds: `uv run python -m src.harness.calibrate fashion_mnist`.

Config overrides follow the dataset, e.g. `... calibrate cifar10 data.verify_md5=false` for a rebuilt mirror.

Scores real images, the reference run (outputs/<dataset>-solution/, when present) and generators that must
fail: an untrained model, a barely trained one, pure noise, one class repeated, and blurred samples.
Prints a Markdown table with each generator's verdict under the current THRESHOLDS.
"""

import argparse
import tempfile
from pathlib import Path

import torch
from omegaconf import OmegaConf
from torchvision.transforms.functional import gaussian_blur

from src.harness.cli import output_dir
from src.harness.config import load_config
from src.harness.data import DATASETS, load_data, to_model_range
from src.harness.quality import EVAL_SAMPLES, evaluation_samples, judge, sample_quality
from src.harness.schedule import NoiseSchedule
from src.harness.train import autocast_factory, load_checkpoint, resolve_precision, train
from src.solution.model import DiffusionModel

ROOT = Path(__file__).resolve().parents[2]
BARELY_TRAINED_STEPS = 60


def generators(dataset: str, cfg, data):
    """(name, images (N, C, H, W) in [-1, 1]) for every generator in the table."""
    device = torch.device("cpu")
    autocast = autocast_factory(device, resolve_precision(cfg.training.precision, device))
    schedule = NoiseSchedule.from_config(cfg.diffusion)
    channels, size = DATASETS[dataset].shape(cfg.data)
    shape = (EVAL_SAMPLES, channels, size, size)

    def model_samples(model):
        return evaluation_samples(model, schedule, shape, autocast)

    # Real images outside the first 2N, which sample_quality compares against.
    held_out_real = to_model_range(data.val[2 * EVAL_SAMPLES:3 * EVAL_SAMPLES])
    yield "real test images", held_out_real
    checkpoint = ROOT / output_dir(cfg, solution=True) / "checkpoint.pt"
    reference = None
    if checkpoint.exists():
        model = DiffusionModel(channels, size, **cfg.model)
        model.load_state_dict(load_checkpoint(checkpoint)["ema"]["model"])
        reference = model_samples(model)
        yield f"reference, `configs/{dataset}.yaml`", reference
    torch.manual_seed(0)
    yield "untrained model", model_samples(DiffusionModel(channels, size, **cfg.model))
    with tempfile.TemporaryDirectory() as scratch:
        short = OmegaConf.merge(cfg, {"training": {"max_steps": BARELY_TRAINED_STEPS}})
        torch.manual_seed(0)
        model = DiffusionModel(channels, size, **short.model)
        ema = train(short, model, schedule, data.train, device, Path(scratch) / "checkpoint.pt").ema.model
        yield f"barely trained ({BARELY_TRAINED_STEPS} steps)", model_samples(ema)
    yield "pure noise", torch.randn(shape, generator=torch.Generator().manual_seed(0)).clamp(-1, 1)
    one_class = to_model_range(data.train[data.train_labels == 1][:EVAL_SAMPLES])
    yield f"one class repeated (real {data.classes[1]})", one_class
    blurred = reference if reference is not None else held_out_real
    yield "blurred (Gaussian, sigma 1.5)", gaussian_blur(blurred, kernel_size=7, sigma=1.5)


def calibration_table(dataset: str, overrides: list[str] = ()) -> str:
    cfg = load_config(ROOT / "configs" / f"{dataset}.yaml", overrides)
    data = load_data(cfg.data)
    real = to_model_range(data.val)
    rows = ["| generator | mean confidence | confident (>= 0.9) | classes covered | FD | FD / real-vs-real | verdict |",
            "| --- | --- | --- | --- | --- | --- | --- |"]
    for name, images in generators(dataset, cfg, data):
        q = sample_quality(images, real, dataset, data.classes)
        verdict = "pass" if not judge(q, dataset) else "fail"
        rows.append(f"| {name} | {q['mean_confidence']:.3f} | {q['confident_share']:.1%} | {q['classes_covered']} | "
                    f"{q['fd']:.2f} | {q['fd'] / q['real_vs_real_fd']:.1f} | {verdict} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=["fashion_mnist", "cifar10"])
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, as for main.py")
    args = parser.parse_args()
    print(calibration_table(args.dataset, args.overrides))
