"""The calibration behind Level 8's bars: `uv run python -m calibration.latent` (minutes on a CPU, once the runs exist).

Scores every latent run as the level's trained-run tests do: the reference's recorded run; the zoo's student-style
pairs, an autoencoder and a network each written independently of the reference (train them first with
`python -m calibration.train_zoo fashion_mnist_latent conv_vae+plain_unet ...`); reference runs with the mistakes a
student's autoencoder resembles (BROKEN_RUNS, trained here by main.py when missing, `--train`); and the reference's
autoencoder under an untrained and a barely trained network. For each it stores the reconstructions of the first
RECONSTRUCTED held-out images and the 256 decoded evaluation samples as grids in
calibration/grids/fashion_mnist_latent/<key>-{reconstructions,samples}.png, and prints a Markdown table of the
scores, the grader's verdicts and those of a person who looked at the grids (calibration/verdicts.json).
`--rescore` scores the stored grids, which is what tests/harness/test_calibration.py checks.
"""

import argparse
import importlib
import json
import subprocess
import sys
from types import SimpleNamespace

from omegaconf import OmegaConf
from torchvision.transforms.functional import gaussian_blur

from calibration.calibrate import GRIDS, VERDICTS, load_samples, save_samples, weak_networks
from calibration.train_zoo import LATENT_AUTOENCODERS, zoo_run_dir
from calibration.zoo import ZOO_MODELS
from src.harness.loading import REFERENCE
from src.harness.paths import REFERENCE_RUNS, ROOT
from src.harness.policy import EVAL_SAMPLES, LATENT_RECONSTRUCTION_RMSE
from src.harness.run.config import Config, official_config
from src.harness.run.data import load_data, model_input
from src.harness.run.kinds import build_model, latent_shape
from src.harness.run.latent import LatentSpace, build_autoencoder
from src.harness.run.objective import make_objective
from src.harness.run.quality import edge_ratio, evaluation_samples, fd_ratio, judge, sample_quality
from src.harness.run.runtime import Runtime
from src.harness.run.train import load_checkpoint
from tests.harness.helpers import submission

CONFIG = "fashion_mnist_latent"
REFERENCE_AUTOENCODER = REFERENCE.module("autoencoder").Autoencoder
RECONSTRUCTED = 64  # held-out images whose reconstructions are stored and scored
# Reference runs with one setting changed as a student's mistake would change it: {key: (description, overrides)}.
BROKEN_RUNS = {
    "pixel_mean_loss": ("reference, the squared error averaged over the pixels (the KL weighs 784x more)",
                        ["latent.kl_weight=0.784"]),
    "barely_trained_autoencoder": ("reference, the autoencoder trained 47 steps (5% of an epoch)",
                                   ["latent.epochs=0.05"]),
}


def broken_run_dir(key: str):
    """The run folder main.py --solution writes for BROKEN_RUNS[key]: the zoo's, with the reference's suffix."""
    return zoo_run_dir(CONFIG, f"{key}{REFERENCE.run_suffix}")


def train_broken_runs(keys) -> None:
    for key in keys:
        if (broken_run_dir(key) / "checkpoint.pt").exists():
            continue
        command = [sys.executable, "main.py", "--config", f"configs/{CONFIG}.yaml", "--solution",
                   "training.preview_every=0", "training.eval_every=0", "output.animation=false",
                   f"output.root={broken_run_dir(key).parent}", f"output.name={key}", *BROKEN_RUNS[key][1]]
        subprocess.run(command, cwd=ROOT, check=True)


def _autoencoder_module(name: str):
    """The module of a zoo autoencoder (train_zoo.LATENT_AUTOENCODERS), imported from its file."""
    path = LATENT_AUTOENCODERS[name]
    if path.parent.name == "submissions":
        return submission(path.stem)
    return importlib.import_module(f"calibration.latent_zoo.{path.stem}")


def _space(state: dict, autoencoder) -> LatentSpace:
    autoencoder.load_state_dict(state["autoencoder"])
    return LatentSpace(autoencoder, state["latent_scale"])


def _network(model, state: dict):
    model.load_state_dict(state["ema"]["model"])
    return model.eval()


def runs(cfg, data):
    """(key, description, latent space, diffusion network) of every latent run that exists now."""
    reference = load_checkpoint(REFERENCE_RUNS / f"{CONFIG}.pt")
    reference_space = _space(reference, build_autoencoder(cfg, REFERENCE_AUTOENCODER))
    yield ("reference", f"reference, the recorded run of `configs/{CONFIG}.yaml`", reference_space,
           _network(build_model(cfg, REFERENCE), reference))
    for member in (path.name for path in sorted(zoo_run_dir(CONFIG, "x").parent.glob("*+*"))):
        state = load_checkpoint(zoo_run_dir(CONFIG, member) / "checkpoint.pt")
        autoencoder, _, network = member.partition("+")
        student = importlib.import_module(f"calibration.zoo.{network}").DiffusionModel
        channels, _, size = latent_shape(cfg)
        yield (f"zoo-{member}", f"student: autoencoder {autoencoder}, network {ZOO_MODELS[network]}",
               _space(state, _autoencoder_module(autoencoder).Autoencoder(1, channels)),
               _network(student(channels, size), state))
    for key, (description, _) in BROKEN_RUNS.items():
        path = broken_run_dir(key) / "checkpoint.pt"
        if path.exists():
            state = load_checkpoint(path)
            run_cfg = OmegaConf.merge(OmegaConf.structured(Config), state["config"])
            yield (key, description, _space(state, build_autoencoder(run_cfg, REFERENCE_AUTOENCODER)),
                   _network(build_model(run_cfg, REFERENCE), state))
    encoded = SimpleNamespace(train=reference_space.encode(model_input(data.train)))  # what weak_networks trains on
    for key, description, network in weak_networks(cfg, encoded):
        yield key, f"{description}, the reference's autoencoder", reference_space, network


def draw(cfg, data) -> list[tuple[str, str]]:
    """Store the grids of every run; returns (key, description) of each."""
    objective = make_objective(cfg.diffusion, source=REFERENCE)
    autocast = Runtime.choose("cpu", cfg.training.precision).autocast
    originals = model_input(data.val[:RECONSTRUCTED])
    drawn, decoded = [], {}
    for key, description, space, network in runs(cfg, data):
        latents = evaluation_samples(network, objective, (EVAL_SAMPLES, *latent_shape(cfg)), autocast)
        decoded[key] = space.decode(latents), space.decode(space.encode(originals))
        drawn.append((key, description))
    # Samples as soft as Level 1's over-smoothed generator, which its person failed: where the edge bar must fail.
    samples, reconstructions = decoded["reference"]
    decoded["smoothed"] = gaussian_blur(samples, kernel_size=5, sigma=0.8), reconstructions
    drawn.append(("smoothed", "the reference's decoded samples over-smoothed (Gaussian, sigma 0.8)"))
    for key, (samples, reconstructions) in decoded.items():
        save_samples(samples, grid_path(key, "samples"))
        save_samples(reconstructions, grid_path(key, "reconstructions"))
    return drawn


def grid_path(key: str, what: str):
    return GRIDS / CONFIG / f"{key}-{what}.png"


def stored_scores(key: str, data) -> dict:
    """The scores of the stored grids of `key`: the reconstruction RMSE and the decoded samples' quality."""
    originals = model_input(data.val[:RECONSTRUCTED])
    reconstructions = load_samples(grid_path(key, "reconstructions"), 1, 28, RECONSTRUCTED)
    quality = sample_quality(load_samples(grid_path(key, "samples"), 1, 28), model_input(data.val), "fashion_mnist",
                             data.classes, model_input(data.train))
    return {"reconstruction_rmse": (reconstructions - originals).pow(2).mean().sqrt().item(), "quality": quality}


def grader_verdicts(scores: dict) -> dict:
    return {"reconstructions": "pass" if scores["reconstruction_rmse"] <= LATENT_RECONSTRUCTION_RMSE else "fail",
            "samples": "fail" if judge(scores["quality"], "fashion_mnist_latent") else "pass"}


def human_verdicts() -> dict:
    """{key: {"description", "reconstructions", "samples" ("pass" | "fail"), "why"}}: what a person saw."""
    return json.loads(VERDICTS.read_text()).get(CONFIG, {})


def calibration_table(rescore: bool = False) -> str:
    cfg = official_config(CONFIG)
    data = load_data(cfg.data)
    verdicts = human_verdicts()
    drawn = [(key, entry["description"]) for key, entry in verdicts.items()] if rescore else draw(cfg, data)
    rows = ["| generator | reconstruction RMSE | classes covered | FD / real-vs-real | edges / real | copies "
            "| reconstructions: person, grader | samples: person, grader |", "| --- " * 8 + "|"]
    for key, description in drawn:
        scores = stored_scores(key, data)
        q, grader, person = scores["quality"], grader_verdicts(scores), verdicts.get(key, {})
        rows.append(f"| {description} | {scores['reconstruction_rmse']:.3f} | {q['classes_covered']} | "
                    f"{fd_ratio(q):.1f} | {edge_ratio(q):.2f} | {q['copy_ratio']:.2f} | "
                    f"{person.get('reconstructions', '?')}, {grader['reconstructions']} | "
                    f"{person.get('samples', '?')}, {grader['samples']} |")
        print(rows[-1], flush=True)
    return "\n".join(rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", action="store_true", help="train the broken reference runs that are missing")
    parser.add_argument("--rescore", action="store_true", help="score the stored grids instead of drawing")
    args = parser.parse_args()
    if args.train:
        train_broken_runs(BROKEN_RUNS)
    print(calibration_table(args.rescore))
