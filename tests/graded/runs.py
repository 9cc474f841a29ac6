"""Trained runs for the level tests: the checkpoint main.py wrote, checked and reloaded, never a metrics file; and
the measures the levels take of them (sample quality for Levels 1, 3 and 7, the validation loss for Level 2)."""

import json
import os
from functools import lru_cache

import pytest
from omegaconf import OmegaConf

from src.harness.levels import trained_runs
from src.harness.loading import REFERENCE, CodeSource
from src.harness.paths import REFERENCE_RUNS, ROOT
from src.harness.policy import bars_of
from src.harness.run.conditioning import conditioning_of
from src.harness.run.config import Config, official_config, output_dir, recipe_changes
from src.harness.run.data import DATASETS, load_data, to_model_range
from src.harness.run.kinds import build_model, kind_of, sample_shape_of, trained_code
from src.harness.run.latent import LatentSpace, Latents, latent_space_of
from src.harness.run.objective import NoisePrediction, make_objective
from src.harness.run.quality import evaluate
from src.harness.run.runtime import Runtime
from src.harness.run.schedule import NoiseSchedule
from src.harness.run.train import NotACheckpointError, budget_of, load_checkpoint, recorded_budget, total_steps

REFERENCE_SCORES = ROOT / "src" / "harness" / "reference_scores.json"


def command(config: str, source: CodeSource) -> str:
    return f"uv run python main.py --config configs/{config}.yaml" + (" --solution" if source.reference else "")


def checkpoint_path(config: str, source: CodeSource):
    return ROOT / output_dir(official_config(config), source) / "checkpoint.pt"


# The reference's recorded runs (EMA weights and what main.py recorded; instructor repository only), one per run a
# level grades (src/harness/levels.py), written by `uv run python -m tests.graded.record --runs`.
RECORD_COMMAND = "uv run python -m tests.graded.record --runs"


def reference_run_path(config: str):
    return REFERENCE_RUNS / f"{config}.pt"


def trained_model(config: str, model_class, source: CodeSource):
    """(EMA model, its run config) of the student's run in outputs/<config>/checkpoint.pt, or for the REFERENCE of the
    reference's recorded run (src/solution/runs/<config>.pt; a run too dear to record, CIFAR-10's, from
    outputs/<config>-solution/), after checking its budget and the code that trained it."""
    state, path = checked_run(config, source)
    run_cfg = OmegaConf.merge(OmegaConf.structured(Config), state["config"])  # older runs lack newer sections
    shape = sample_shape_of(run_cfg)
    kind = kind_of(run_cfg.data.name)
    arguments = conditioning_of(run_cfg).model_arguments
    if model_class is None:  # the reference's, here (reference_model)
        model = build_model(run_cfg, REFERENCE)
    else:  # where the code under test lives: a sampler graded on it takes gradients through it (Level 9)
        architecture = OmegaConf.to_container(run_cfg.model) if source.reference else {}
        model = kind.build(model_class, shape, architecture | arguments)
    try:
        model.load_state_dict(state["ema"]["model"])
    except RuntimeError as err:
        pytest.fail(f"{os.path.relpath(path, ROOT)} holds weights that do not fit this DiffusionModel "
                    f"({str(err).splitlines()[1].strip() if len(str(err).splitlines()) > 1 else err}): "
                    f"{_retrain_advice(config, source, '', path)}", pytrace=False)
    return model.eval(), run_cfg


def checked_run(config: str, source: CodeSource) -> tuple[dict, object]:
    """(the checkpoint, its path) of `source`'s run of `config` that trained_model reads, checked as it says."""
    path = checkpoint_path(config, source)
    if source.reference and trained_runs()[config].recorded:
        path = reference_run_path(config)
        if not path.exists():
            pytest.fail(f"no recorded reference run for {config}: train one with `{command(config, REFERENCE)}` and "
                        f"record it with `{RECORD_COMMAND} {config}`", pytrace=False)
    elif source.reference and not path.exists():
        pytest.skip(f"no reference run for {config}: `{command(config, REFERENCE)}` makes one (hours on a CPU)")
    if not path.exists():
        pytest.fail(f"no trained model yet: run `{command(config, source)}` first "
                    f"(it writes {os.path.relpath(path, ROOT)})", pytrace=False)
    state = _load(path)
    official = official_config(config)
    problem = provenance_problem(state, official, source)
    if problem:
        pytest.fail(f"{os.path.relpath(path, ROOT)} {problem}; {_retrain_advice(config, source, problem, path)}",
                    pytrace=False)
    return state, path


def _retrain_advice(config: str, source: CodeSource, problem: str, path) -> str:
    if path == reference_run_path(config):
        return (f"train the reference again with `{command(config, REFERENCE)} --overwrite` and record it with "
                f"`{RECORD_COMMAND} {config}`")
    if problem.startswith("stopped"):
        return f"finish it with `{command(config, source)} --resume`"
    return f"train it again with `{command(config, source)} --overwrite`"


def reference_model(config: str):
    """(EMA model, its run config) of the reference's run of `config`, built from the run's config (no class needed)."""
    return trained_model(config, None, REFERENCE)


def _load(path) -> dict:
    try:
        state = load_checkpoint(path)
    except NotACheckpointError:
        state = {}
    except Exception as err:  # truncated or garbage: torch raises many kinds
        pytest.fail(f"{os.path.relpath(path, ROOT)} cannot be read ({type(err).__name__}): it is damaged or not a "
                    f"checkpoint; delete it and train again", pytrace=False)
    if not {"ema", "config", "step"} <= set(state):
        pytest.fail(f"{os.path.relpath(path, ROOT)} is not a checkpoint written by main.py; delete it and train again",
                    pytrace=False)
    return state


def provenance_problem(state: dict, official, source: CodeSource) -> str | None:
    """Why a checkpoint does not count for a level, or None: it must record the official budget, trained to the
    last step, by the code being graded (src/solution/ or src/model.py ..., by the fingerprint main.py recorded);
    the reference's run also by the official recipe (every setting of the config but NOT_RECIPE)."""
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
    if state.get("solution", False) != source.reference:
        network = kind_of(official.data.name).module
        return f"was not trained from {'src/solution' if source.reference else source.path(network)}"
    code = trained_code(official)
    if state.get("model_fingerprint") != source.fingerprint(code):
        files = " and ".join(source.path(name) for name in (*code, "utils"))
        return f"was trained by other code than the current {files} (changed since?)"
    if source.reference:
        changed = recipe_changes(state["config"], official)
        if changed:
            return f"was trained with other settings than configs/{official.output.name}.yaml's ({', '.join(changed)})"
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
def student_validation_loss(model_class, source: CodeSource) -> float:
    """Of the student's Fashion-MNIST run, loaded into `model_class` (src/model.py's DiffusionModel)."""
    return fashion_mnist_validation_loss(*trained_model("fashion_mnist", model_class, source))


# ------------------------------------------------------------------- sample quality (Levels 1, 3 and 7)

def run_quality(config: str, model, run_cfg, source: CodeSource) -> dict:
    """The evaluation main.py prints, recomputed from a run's EMA model: 256 samples of the harness's sampler from a
    fixed seed (with `source`'s flow matching line, for a flow run)."""
    official = official_config(config)
    # A rebuilt data mirror that the run accepted (data.verify_md5=false) is accepted for the real images too.
    data = load_data(OmegaConf.merge(official.data, {"verify_md5": run_cfg.data.verify_md5}))
    return evaluate(model, make_objective(run_cfg.diffusion, source=source), to_model_range(data.val),
                    official.data.name, data.classes, Runtime.choose("cpu", official.training.precision).autocast,
                    data.train)


@lru_cache(maxsize=2)
def reference_quality(config: str) -> dict:
    """Of the reference's run of `config`: evaluated once a session, shared by the tests that judge it."""
    return run_quality(config, *reference_model(config), REFERENCE)


@lru_cache(maxsize=2)
def student_quality(config: str, model_class, source: CodeSource) -> dict:
    """Of the student's run of `config`, loaded into `model_class` (src/model.py's DiffusionModel)."""
    return run_quality(config, *trained_model(config, model_class, source), source)


def quality_of(config: str, model_class, source: CodeSource) -> dict:
    """The evaluation of `source`'s run of `config`: the reference's or the student's, once a session."""
    return reference_quality(config) if source.reference else student_quality(config, model_class, source)


def assert_samples_pass(judgement, config: str, model_class, source: CodeSource,
                        hint: str = "the network, see the README's Level 1 chapter") -> None:
    """Fail with the judgement's reasons (quality.judge or judge_against_reference, at the bars of `config`) and
    what helps: `hint`."""
    reasons = judgement(quality_of(config, model_class, source), bars_of(official_config(config)))
    assert not reasons, "; ".join(reasons) + (
        f" (the budget is fixed: what helps is {hint}; then rerun `{command(config, source)} --overwrite`)")


# ------------------------------------------------------------------------------- Level 8: the latent run

def trained_latent_space(config: str, autoencoder_class, source: CodeSource) -> LatentSpace:
    """The autoencoder and latent scale of `source`'s latent run of `config`, loaded into `autoencoder_class` (where
    the code under test lives), checked as trained_model checks the run."""
    state, path = checked_run(config, source)
    run_cfg = OmegaConf.merge(OmegaConf.structured(Config), state["config"])
    try:
        return latent_space_of(run_cfg, autoencoder_class, state, path)
    except RuntimeError as err:
        pytest.fail(f"{os.path.relpath(path, ROOT)} holds an autoencoder whose weights do not fit this Autoencoder "
                    f"({str(err).splitlines()[0]}): {_retrain_advice(config, source, '', path)}", pytrace=False)


@lru_cache(maxsize=2)
def latent_run_quality(config: str, model_class, autoencoder_class, source: CodeSource) -> dict:
    """The evaluation main.py prints for a latent run: 256 latents of the harness's sampler from a fixed seed,
    decoded by the run's autoencoder and scored as images; once a session for each code."""
    model, run_cfg = trained_model(config, model_class, source)
    official = official_config(config)
    data = load_data(OmegaConf.merge(official.data, {"verify_md5": run_cfg.data.verify_md5}))
    kind = Latents(trained_latent_space(config, autoencoder_class, source), data)
    quality, _ = kind.score(official, model, make_objective(run_cfg.diffusion, source=source), data.train, None,
                            data.classes, Runtime.choose("cpu", official.training.precision).autocast)
    return quality
