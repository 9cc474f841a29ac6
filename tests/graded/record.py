"""Records the reference values the graded tests compare with (instructor repository only).

    uv run python -m tests.graded.record

rewrites tests/graded/recorded/<name>.pt for the RECORDING (tests/graded/recorded/__init__.py) of every graded
file that declares one: the reference samplers' model calls on the fixed recording models of tests/graded/fakes.py,
its flow_matching_pair on fixed inputs, its parameter counts, its short training run. The student release ships
these values, not src/solution/. tests/harness/test_recorded.py recomputes each of them and fails when one is stale.

    uv run python -m tests.graded.record --runs [CONFIG ...]

records the reference's trained runs instead (every run a level grades, src/harness/levels.py, or those named):
each outputs/<config>-solution/ that `main.py --config configs/<config>.yaml --solution` wrote becomes
src/solution/runs/<config>.pt (its EMA weights and what its checkpoint records, about 5.6 MB a Fashion-MNIST run),
and its metrics.json's validation loss and sample scores its entry of src/harness/reference_scores.json.
`pytest --solution` grades these runs; tests/harness/test_reference_runs.py checks that each was trained by the
current reference code and recipe, that its recorded scores are its own, and retrains the runs the levels mark
`retrained_in_ci` to compare them with their recording.
"""

import argparse
import importlib
import json
from pathlib import Path

import torch

from src.harness.levels import trained_runs
from src.harness.loading import REFERENCE
from src.harness.paths import ROOT
from src.harness.run.config import official_config
from src.harness.run.runtime import describe_cpu
from src.harness.run.train import load_checkpoint, save_checkpoint
from tests.graded.recorded import Recording
from tests.graded.runs import REFERENCE_SCORES, checkpoint_path, command, provenance_problem, reference_run_path

GRADED = Path(__file__).resolve().parent


def recordings() -> list[Recording]:
    """The RECORDING of every graded file (tests/graded/test_*.py) that declares one."""
    modules = (importlib.import_module(f"tests.graded.{path.stem}") for path in sorted(GRADED.glob("test_*.py")))
    return [module.RECORDING for module in modules if hasattr(module, "RECORDING")]


# What a recorded run keeps of its checkpoint: the EMA weights and the record the level tests check (no optimiser).
RUN_RECORD = ("step", "images_seen", "total_steps", "config", "budget", "solution", "model_fingerprint")
LATENT_RECORD = ("autoencoder", "latent_scale")  # ... and a latent run's autoencoder (Level 8)


def record_run(config: str) -> Path:
    """outputs/<config>-solution/ (a finished reference run of the current code and recipe) into
    src/solution/runs/<config>.pt and its scores into reference_scores.json; returns the file written."""
    run_path = checkpoint_path(config, REFERENCE)
    if not run_path.exists():
        raise SystemExit(f"no reference run of {config} to record: run `{command(config, REFERENCE)}` first")
    state = load_checkpoint(run_path)
    problem = provenance_problem(state, official_config(config), REFERENCE)
    if problem:
        raise SystemExit(f"{run_path} {problem}: train it again with `{command(config, REFERENCE)} --overwrite`")
    metrics = json.loads((run_path.parent / "metrics.json").read_text())
    target = reference_run_path(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    kept = {key: state[key] for key in RUN_RECORD + LATENT_RECORD if key in state}
    save_checkpoint(target, kept | {"ema": {"model": state["ema"]["model"]}})
    scores = json.loads(REFERENCE_SCORES.read_text())
    scores[config] = {"val_loss": metrics["val_loss"], "quality": metrics["quality"]} | (
        {"guidance": metrics["guidance"]} if "guidance" in metrics else {}) | {
        "command": command(config, REFERENCE),
        "measured_on": f"{describe_cpu()}, 2 cores, torch {torch.__version__.split('+')[0]}; {metrics['precision']} "
                       f"training, float32 validation loss, samples of the harness's {metrics['sampler']} sampler; "
                       "the official budget"}
    REFERENCE_SCORES.write_text(json.dumps(scores, indent=2) + "\n")
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.graded.record", description=__doc__.split("\n")[0])
    parser.add_argument("--runs", nargs="*", metavar="CONFIG",
                        help="record the reference's trained runs (all that a level grades, or these configs)")
    args = parser.parse_args(argv)
    if args.runs is not None:
        runs = trained_runs()
        configs = args.runs or [config for config, run in runs.items() if run.recorded]
        for config in configs:
            print(f"wrote {record_run(config).relative_to(ROOT)} and its scores in {REFERENCE_SCORES.relative_to(ROOT)}")
        return 0
    for recording in recordings():
        print(f"wrote {recording.save().relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
