"""Train the calibration zoo's student-style models at the official budget, exactly as a student would.

    uv run python -m calibration.train_zoo fashion_mnist [MEMBER ...] [key=value ...]

Each member (calibration/zoo/<member>.py, a DiffusionModel written independently of the reference) is
copied into a scratch copy of the kata as src/model.py, and `main.py --config configs/<config>.yaml` runs
there unchanged, with previews, in-training validation and the animation off (none of them is part of the
budget). The config is a graded image run: fashion_mnist, fashion_mnist_flow (the same network trained with
flow matching, with the reference's src/flow.py), fashion_mnist_cfg (trained with labels, drawn with the
reference's guided sampler), cifar10, or fashion_mnist_latent (Level 8), whose members are pairs
AUTOENCODER+NETWORK: an autoencoder written independently of the reference (LATENT_AUTOENCODERS) copied as
src/autoencoder.py beside the network. The checkpoints land in outputs/zoo/<config>/<member>/;
`calibration.calibrate` (Level 8: `calibration.latent`) scores them.
"""

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from calibration.zoo import ZOO_MODELS
from src.harness.paths import ROOT

SPEED_ONLY = ["training.preview_every=0", "training.eval_every=0", "output.animation=false"]


ZOO_CONFIGS = ("fashion_mnist", "fashion_mnist_flow", "fashion_mnist_cfg", "cifar10", "fashion_mnist_latent")
# Level 8's student-style autoencoders, each written without the reference: the graded submission, and two more.
LATENT_AUTOENCODERS = {"conv_vae": ROOT / "tests" / "harness" / "submissions" / "autoencoder.py",
                       "mlp_vae": ROOT / "calibration" / "latent_zoo" / "mlp_vae.py",
                       "small_conv_vae": ROOT / "calibration" / "latent_zoo" / "small_conv_vae.py"}


def zoo_run_dir(config: str, member: str) -> Path:
    return ROOT / "outputs" / "zoo" / config / member


def train_member(config: str, member: str, overrides: list[str]) -> None:
    out = zoo_run_dir(config, member)
    with tempfile.TemporaryDirectory() as scratch:
        kata = Path(scratch) / "kata"
        shutil.copytree(ROOT / "src", kata / "src", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(ROOT / "configs", kata / "configs")
        shutil.copy(ROOT / "main.py", kata / "main.py")
        autoencoder, _, network = member.rpartition("+")
        shutil.copy(ROOT / "calibration" / "zoo" / f"{network}.py", kata / "src" / "model.py")
        if autoencoder:
            shutil.copy(LATENT_AUTOENCODERS[autoencoder], kata / "src" / "autoencoder.py")
        for name in ("flow", "sampler"):  # a student's correct Levels 4 to 7
            shutil.copy(ROOT / "src" / "solution" / f"{name}.py", kata / "src" / f"{name}.py")
        command = [sys.executable, "main.py", "--config", f"configs/{config}.yaml", *SPEED_ONLY,
                   f"output.root={out.parent}", f"output.name={member}", *overrides]
        print(f"{member}: {' '.join(command[1:])}", flush=True)
        tic = time.perf_counter()
        subprocess.run(command, cwd=kata, check=True)
        print(f"{member}: trained and scored in {time.perf_counter() - tic:.0f} s", flush=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", choices=ZOO_CONFIGS)
    parser.add_argument("rest", nargs="*", metavar="MEMBER or key=value")
    args = parser.parse_args()
    members = [a for a in args.rest if "=" not in a] or list(ZOO_MODELS)
    for member in members:
        train_member(args.config, member, [a for a in args.rest if "=" in a])
