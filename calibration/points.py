"""The calibration behind the bar of Levels 0, 5 and 7:
`uv run python -m calibration.points [--config moons_flow | --ddim-eta ETA]` (a few minutes on a CPU).

Trains the reference and the student-style point models of calibration/point_zoo/ at the official budget of
configs/moons.yaml (DDPM, Level 0) or configs/moons_flow.yaml (flow matching with the reference's src/flow.py,
Level 7): the same `train` as main.py, same seed. Draws their evaluation samples (2000 points, seed 0, with the
objective's fast sampler, as the level tests do), adds generators that a student's broken work resembles, and
stores every set in calibration/grids/<config>/samples.pt with a scatter plot beside it. With `--ddim-eta`
(Level 5) the moons models are sampled with the reference's DDIM (50 steps) at that eta instead, into
calibration/grids/moons-ddim-eta<ETA>/. Prints a Markdown table
of the Chamfer ratio, the grader's verdict and the verdict of a person who looked at each plot
(calibration/verdicts.json). `--rescore` scores the stored samples, which is what
tests/harness/test_calibration.py checks.
"""

import argparse
import importlib
import json
import tempfile
from contextlib import nullcontext
from functools import partial
from pathlib import Path

import torch

from calibration.point_zoo import POINT_ZOO
from src.harness.loading import REFERENCE
from src.harness.paths import ROOT
from src.harness.policy import EVAL_STEPS, POINT_EVAL_SAMPLES
from src.harness.run.config import official_config
from src.harness.run.data import load_data
from src.harness.run.objective import make_objective
from src.harness.run.points import chamfer_ratio, evaluation_points, judge_points, point_quality, scatter_picture
from src.harness.run.runtime import Runtime
from src.harness.run.train import train
from src.solution.point_model import PointModel as Reference

CONFIGS = ("moons", "moons_flow")  # Level 0's run and Level 7's; both graded by THRESHOLDS["moons"]
VERDICTS = ROOT / "calibration" / "verdicts.json"
BARELY_TRAINED_STEPS = 100


class Linear(torch.nn.Module):
    """A student's MLP with its activations forgotten: a linear map of (x, t / T), so it can only learn a Gaussian."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, 128), torch.nn.Linear(128, 128),
                                       torch.nn.Linear(128, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.float()[:, None] / 1000], dim=1))


class TooShallow(torch.nn.Module):
    """A student's MLP with two hidden layers of SiLU, fewer than the stub advises: at the official budget it draws
    the moons as a blurred band (three layers do; calibration of the budget in docs/calibration/level0.md)."""

    def __init__(self, dim: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(dim + 1, 128), torch.nn.SiLU(), torch.nn.Linear(128, 128),
                                       torch.nn.SiLU(), torch.nn.Linear(128, dim))

    def forward(self, x, t):
        return self.net(torch.cat([x, t.float()[:, None] / 1000], dim=1))


class IgnoresTime(Reference):
    """The reference network fed t = 0 always: it cannot tell how noisy its input is."""

    def forward(self, x, t):
        return super().forward(x, torch.zeros_like(t))


def trained_run(config: str, model, overrides: list[str] = (), objective=None):
    """(EMA model, run config): `model` trained at the official budget of `config` (plus `overrides`) as main.py
    trains it, with `objective` (default: the config's, flow matching from the reference's src/flow.py)."""
    cfg = official_config(config, ["training.eval_every=0", "training.preview_every=0", *overrides])
    objective = objective or make_objective(cfg.diffusion, source=REFERENCE)
    with tempfile.TemporaryDirectory() as scratch:
        result = train(cfg, model, objective, load_data(cfg.data).train, Runtime.choose("cpu", "fp32"),
                       Path(scratch) / "checkpoint.pt")
    return result.ema.model, cfg


def _trained_samples(config: str, model, overrides: list[str] = (), ddim_eta: float | None = None) -> torch.Tensor:
    """The evaluation points of `model` trained at the official budget of `config` (plus `overrides`), drawn by the
    objective's fast sampler or, with ddim_eta, by the reference's DDIM at that eta."""
    ema_model, cfg = trained_run(config, model, overrides)
    objective = make_objective(cfg.diffusion, source=REFERENCE)
    if ddim_eta is None:
        return evaluation_points(ema_model, objective, nullcontext)
    ddim_sample = REFERENCE.module("sampler").ddim_sample
    return ddim_sample(ema_model.eval(), objective.schedule, (POINT_EVAL_SAMPLES, 2),
                       torch.Generator().manual_seed(0), num_steps=EVAL_STEPS, eta=ddim_eta)


def generators(config: str, data, ddim_eta: float | None = None):
    """(key, description, points (2000, 2)) for every generator of the calibration of `config` (sampled with DDIM at
    `ddim_eta`, if given)."""
    trained_samples = partial(_trained_samples, ddim_eta=ddim_eta)
    n, g = 2000, torch.Generator().manual_seed(5)
    real = data.train[n:2 * n]  # train[:n] is what the score compares against
    yield "real", "real points (held out)", real
    torch.manual_seed(0)
    yield "reference", f"reference, `configs/{config}.yaml`", trained_samples(config, Reference(2))
    for member, description in POINT_ZOO.items():
        torch.manual_seed(0)
        model = importlib.import_module(f"calibration.point_zoo.{member}").PointModel(2)
        yield f"zoo-{member}", f"student: {description}", trained_samples(config, model)
    torch.manual_seed(0)
    yield "linear", "student: the MLP without activations (linear)", trained_samples(config, Linear(2))
    if ddim_eta is None:  # Level 0 fails it (5.2x); Level 5 grades DDIM on a run that passed Level 0
        torch.manual_seed(0)
        yield "too_shallow", "student: an MLP of two hidden layers (2 x 128, SiLU)", \
            trained_samples(config, TooShallow(2))
    torch.manual_seed(0)
    yield "ignores_time", "the reference network fed t = 0", trained_samples(config, IgnoresTime(2))
    torch.manual_seed(0)
    yield "barely_trained", f"the reference after {BARELY_TRAINED_STEPS} steps", \
        trained_samples(config, Reference(2), [f"training.max_steps={BARELY_TRAINED_STEPS}"])
    mean, cov = real.mean(0), torch.cov(real.T)
    yield "gaussian", "a Gaussian with the data's mean and covariance", \
        mean + torch.randn(n, 2, generator=g) @ torch.linalg.cholesky(cov).T
    yield "blurred", "real points plus noise of std 0.1", real + 0.1 * torch.randn(n, 2, generator=g)
    yield "shrunk", "real points scaled by 0.8 (a sampler's wrong scale)", 0.8 * real
    yield "shifted", "real points shifted by (0.1, 0.1)", real + 0.1
    one_moon = data.train[data.train_labels == 0]
    yield "one_moon", "only the upper moon (half the data dropped)", one_moon[:n]


def human_verdicts(config: str) -> dict:
    """{generator key: {"description", "shape" ("pass" | "fail"), "why"}}: what a person saw in each scatter plot."""
    return json.loads(VERDICTS.read_text()).get(config, {})


def grader_verdict(quality: dict) -> str:
    return "fail" if judge_points(quality, "moons") else "pass"


def grid_name(config: str, ddim_eta: float | None = None) -> str:
    """The folder of calibration/grids/ (and the key of verdicts.json) of a calibration."""
    return config if ddim_eta is None else f"{config}-ddim-eta{ddim_eta:g}"


# Every stored calibration: Levels 0 and 7, and Level 5's DDIM at eta 0 and 1 on the moons.
GRID_NAMES = (*CONFIGS, *(grid_name("moons", eta) for eta in (0.0, 1.0)))


def samples_file(name: str) -> Path:
    return ROOT / "calibration" / "grids" / name / "samples.pt"


def stored_samples(name: str) -> dict[str, torch.Tensor]:
    return torch.load(samples_file(name), weights_only=True)


def calibration_table(config: str, rescore: bool = False, ddim_eta: float | None = None) -> str:
    data = load_data(official_config(config).data)
    name = grid_name(config, ddim_eta)
    if rescore:
        drawn = stored_samples(name)
        descriptions = {key: entry["description"] for key, entry in human_verdicts(name).items()}
    else:
        drawn, descriptions = {}, {}
        folder = samples_file(name).parent
        folder.mkdir(parents=True, exist_ok=True)
        for key, description, points in generators(config, data, ddim_eta):
            drawn[key], descriptions[key] = points.float(), description
            scatter_picture(points, data.val, title=key).save(folder / f"{key}.png")
            print(f"drew {key}", flush=True)
        torch.save(drawn, samples_file(name))
    verdicts = human_verdicts(name)
    rows = ["| generator | Chamfer / real-vs-real | the data's shape: person, grader |", "| --- | --- | --- |"]
    for key, points in drawn.items():
        quality = point_quality(points, data.train, data.val)
        person = verdicts.get(key, {}).get("shape", "?")
        rows.append(f"| {descriptions[key]} | {chamfer_ratio(quality):.2f} | {person}, {grader_verdict(quality)} |")
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", choices=CONFIGS, default="moons", help="the run whose bar to calibrate")
    parser.add_argument("--ddim-eta", type=float, help="sample the moons models with the reference's DDIM (Level 5)")
    parser.add_argument("--rescore", action="store_true", help="score the stored samples instead of drawing them")
    args = parser.parse_args()
    if args.ddim_eta is not None and args.config != "moons":
        parser.error("--ddim-eta samples the DDPM moons models (--config moons)")
    print(calibration_table(args.config, args.rescore, args.ddim_eta))
