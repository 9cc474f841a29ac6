"""Trained runs for the level tests: the checkpoint main.py wrote, checked and reloaded, never a metrics file."""

import json
import os
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from src.harness.cli import output_dir
from src.harness.config import load_config
from src.harness.data import DATASETS
from src.harness.loading import build_model
from src.harness.train import load_checkpoint
from tests.conftest import ROOT

# What makes two runs comparable: a longer or differently configured run does not count for a level.
BUDGET_KEYS = ["data.name", "data.batch_size", "training.epochs", "training.max_steps", "diffusion.num_timesteps",
               "diffusion.schedule", "diffusion.beta_start", "diffusion.beta_end"]
REFERENCE_SCORES = ROOT / "src" / "harness" / "reference_scores.json"


def command(config: str, solution: bool) -> str:
    return f"uv run python main.py --config configs/{config}.yaml" + (" --solution" if solution else "")


def checkpoint_path(config: str, solution: bool):
    return ROOT / output_dir(load_config(ROOT / "configs" / f"{config}.yaml"), solution) / "checkpoint.pt"


def train_reference(config: str) -> None:
    """Run main.py for the reference (the --solution suite needs a real reference run; minutes on a CPU)."""
    print(f"\nno reference checkpoint yet: running `{command(config, True)}` (once; later runs reuse it)")
    env = {**os.environ, "KATA_PROGRESS": "0"}
    subprocess.run([sys.executable, "main.py", "--config", f"configs/{config}.yaml", "--solution"],
                   cwd=ROOT, check=True, env=env)


# References trained on the spot by `pytest --solution` when missing; CIFAR-10 takes an hour on a 2-core CPU.
TRAINED_ON_DEMAND = {"fashion_mnist"}


def trained_model(config: str, model_class, solution: bool):
    """(EMA model, its run config) from outputs/<config>[-solution]/checkpoint.pt, after checking its budget."""
    path = checkpoint_path(config, solution)
    if not path.exists() and solution:
        if config not in TRAINED_ON_DEMAND:
            pytest.skip(f"no reference run for {config}: `{command(config, True)}` makes one (about an hour on a CPU)")
        train_reference(config)
    if not path.exists():
        pytest.fail(f"no trained model yet: run `{command(config, solution)}` first "
                    f"(it writes {path.relative_to(ROOT)})", pytrace=False)
    state = load_checkpoint(path)
    run_cfg = OmegaConf.create(state["config"])
    official = load_config(ROOT / "configs" / f"{config}.yaml")
    for key in BUDGET_KEYS:
        used, allowed = OmegaConf.select(run_cfg, key), OmegaConf.select(official, key)
        if used != allowed:
            pytest.fail(f"{path.relative_to(ROOT)} was trained with {key}={used}, but this level is graded at the "
                        f"official {key}={allowed}: rerun `{command(config, solution)}` without that override",
                        pytrace=False)
    if state["step"] < state["total_steps"]:
        pytest.fail(f"{path.relative_to(ROOT)} stopped at step {state['step']} of {state['total_steps']}: finish it "
                    f"with `{command(config, solution)} --resume`", pytrace=False)
    if state.get("solution", False) != solution:
        pytest.fail(f"{path.relative_to(ROOT)} was not trained from {'src/solution' if solution else 'src/model.py'}",
                    pytrace=False)
    channels, size = DATASETS[run_cfg.data.name].shape(run_cfg.data)
    model = build_model(run_cfg.model, channels, size, True) if solution else model_class(channels, size)
    model.load_state_dict(state["ema"]["model"])
    return model.eval(), run_cfg


def recorded_reference(config: str) -> dict:
    return json.loads(REFERENCE_SCORES.read_text())[config]
