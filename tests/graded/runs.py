"""Trained runs for the level tests: the checkpoint main.py wrote, checked and reloaded, never a metrics file."""

import json
import os
import subprocess
import sys
from functools import lru_cache

import pytest
from omegaconf import OmegaConf

from src.harness.cli import output_dir
from src.harness.data import DATASETS, load_data, to_model_range
from src.harness.kinds import kind_of
from src.harness.loading import STUDENT_FILES, build_model, model_fingerprint, trained_code
from src.harness.objective import NoisePrediction
from src.harness.paths import ROOT, official_config
from src.harness.schedule import NoiseSchedule
from src.harness.conditioning import conditioning_of
from src.harness.config import Config
from src.harness.train import budget_of, load_checkpoint, recorded_budget, total_steps

REFERENCE_SCORES = ROOT / "src" / "harness" / "reference_scores.json"


def command(config: str, solution: bool) -> str:
    return f"uv run python main.py --config configs/{config}.yaml" + (" --solution" if solution else "")


def checkpoint_path(config: str, solution: bool):
    return ROOT / output_dir(official_config(config), solution) / "checkpoint.pt"


def train_reference(config: str) -> None:
    """Run main.py for the reference (the --solution suite needs a real reference run; minutes on a CPU)."""
    print(f"\nno reference checkpoint yet: running `{command(config, True)}` (once; later runs reuse it)")
    env = {**os.environ, "KATA_PROGRESS": "0"}
    subprocess.run([sys.executable, "main.py", "--config", f"configs/{config}.yaml", "--solution"],
                   cwd=ROOT, check=True, env=env)


# References trained on the spot by `pytest --solution` when missing; CIFAR-10 takes an hour on a 2-core CPU.
TRAINED_ON_DEMAND = {"fashion_mnist", "fashion_mnist_cfg", "fashion_mnist_flow", "moons", "moons_flow"}


def trained_model(config: str, model_class, solution: bool):
    """(EMA model, its run config) from outputs/<config>[-solution]/checkpoint.pt, after checking its budget."""
    path = checkpoint_path(config, solution)
    if not path.exists() and solution:
        if config not in TRAINED_ON_DEMAND:
            pytest.skip(f"no reference run for {config}: `{command(config, True)}` makes one (about an hour on a CPU)")
        train_reference(config)
    if not path.exists():
        pytest.fail(f"no trained model yet: run `{command(config, solution)}` first "
                    f"(it writes {os.path.relpath(path, ROOT)})", pytrace=False)
    state = _load(path)
    official = official_config(config)
    problem = provenance_problem(state, official, solution)
    if problem:
        unfinished = problem.startswith("stopped")
        fix = f"finish it with `{command(config, solution)} --resume`" if unfinished \
            else f"train it again with `{command(config, solution)} --overwrite`"
        pytest.fail(f"{os.path.relpath(path, ROOT)} {problem}; {fix}", pytrace=False)
    run_cfg = OmegaConf.merge(OmegaConf.structured(Config), state["config"])  # older runs lack newer sections
    shape = DATASETS[run_cfg.data.name].shape(run_cfg.data)
    kind = kind_of(run_cfg.data.name)
    arguments = conditioning_of(run_cfg).model_arguments
    model = build_model(run_cfg, solution=True) if solution else kind.build(model_class, shape, arguments)
    try:
        model.load_state_dict(state["ema"]["model"])
    except RuntimeError as err:
        pytest.fail(f"{os.path.relpath(path, ROOT)} holds weights that do not fit this DiffusionModel "
                    f"({str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}): train it "
                    f"again with `{command(config, solution)} --overwrite`", pytrace=False)
    return model.eval(), run_cfg


def reference_model(config: str):
    """(EMA model, its run config) of the reference's run of `config`, built from the run's config (no class needed)."""
    return trained_model(config, None, solution=True)


def _load(path) -> dict:
    try:
        state = load_checkpoint(path)
    except Exception as err:  # truncated, garbage or not a checkpoint at all: torch raises many kinds
        pytest.fail(f"{os.path.relpath(path, ROOT)} cannot be read ({type(err).__name__}): it is damaged or not a "
                    f"checkpoint; delete it and train again", pytrace=False)
    if not isinstance(state, dict) or not {"ema", "config", "step"} <= set(state):
        pytest.fail(f"{os.path.relpath(path, ROOT)} is not a checkpoint written by main.py; delete it and train again",
                    pytrace=False)
    return state


def provenance_problem(state: dict, official, solution: bool) -> str | None:
    """Why a checkpoint does not count for a level, or None: it must record the official budget, trained to the
    last step, by the code being graded (the reference, or src/model.py with the fingerprint main.py recorded)."""
    if state.get("budget") is None:
        return "does not record its training budget (it was written by an older kata or by hand)"
    budget = recorded_budget(state)
    for key, allowed in budget_of(official).items():
        if budget.get(key) != allowed:
            return (f"was trained with {key}={budget.get(key)}, but this level is graded at the official "
                    f"{key}={allowed}, without that override")
    num_train = DATASETS[official.data.name].num_train(official.data)
    official_steps = total_steps(official.training, num_train // official.data.batch_size)
    if state["step"] < official_steps:
        return f"stopped at step {state['step']} of {official_steps}"
    if state["step"] > official_steps or state.get("images_seen") != official_steps * official.data.batch_size:
        return (f"records {state['step']} steps and {state.get('images_seen')} images seen, but the official budget "
                f"is {official_steps} steps of {official.data.batch_size} images")
    if state.get("solution", False) != solution:
        return f"was not trained from {'src/solution' if solution else f'src/{kind_of(official.data.name).module}.py'}"
    code = trained_code(official)
    if not solution and state.get("model_fingerprint") != model_fingerprint(code):
        files = " and ".join(STUDENT_FILES[name] for name in (*code, "utils"))
        return f"was trained by other code than the current {files} (changed since?)"
    return None


def recorded_reference(config: str) -> dict:
    return json.loads(REFERENCE_SCORES.read_text())[config]


# ------------------------------------------------------------------------------------- Level 2's measure

def fashion_mnist_validation_loss(model, run_cfg) -> float:
    """The loss Level 2 compares: on the official Fashion-MNIST validation images, with the run's noise schedule."""
    official = official_config("fashion_mnist")
    images = to_model_range(load_data(official.data).val)
    objective = NoisePrediction(NoiseSchedule.from_config(run_cfg.diffusion))
    return objective.validation_loss(model, images, official.training.val_batch_size)["loss"]


@lru_cache(maxsize=1)
def reference_validation_loss() -> float:
    """Of the reference's Fashion-MNIST run (trained first by `pytest --solution` when missing); measured once a
    session, whichever test asks first."""
    return fashion_mnist_validation_loss(*reference_model("fashion_mnist"))


@lru_cache(maxsize=1)
def student_validation_loss(model_class) -> float:
    """Of the student's Fashion-MNIST run, loaded into `model_class` (src/model.py's DiffusionModel)."""
    return fashion_mnist_validation_loss(*trained_model("fashion_mnist", model_class, solution=False))
