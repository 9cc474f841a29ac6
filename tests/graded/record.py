"""Records the reference values the graded tests compare with (instructor repository only).

    uv run python -m tests.graded.record

rewrites tests/graded/recorded/: the reference DDPM and DDIM samplers' model calls on the fixed RecordingModel
(tests/graded/fakes.py) and seed, the guided sampler's on the fixed ConditionalRecordingModel, the reference flow_matching_pair on fixed inputs and its Euler sampler's model calls,
the reference model's parameter count per official config, and the losses of test_training's short run of the
reference. The student release ships these values, not src/solution/.
tests/harness/test_recorded.py recomputes each of them and fails when one is stale.

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
import json
from pathlib import Path

import torch

from src.harness.grade.short_run import short_run
from src.harness.levels import trained_runs
from src.harness.loading import REFERENCE
from src.harness.paths import ROOT
from src.harness.policy import SHORT_RUN_STEPS
from src.harness.run.config import official_config
from src.harness.run.kinds import build_model
from src.harness.run.runtime import Runtime, describe_cpu
from src.harness.run.train import load_checkpoint, save_checkpoint
from tests.graded import recorded
from tests.graded.runs import REFERENCE_SCORES, checkpoint_path, command, provenance_problem, reference_run_path

DATASETS = ("fashion_mnist", "cifar10")


def reference_parameters() -> dict[str, int]:
    return {dataset: sum(p.numel() for p in build_model(official_config(dataset), REFERENCE).parameters())
            for dataset in DATASETS}


def reference_short_run() -> dict:
    before, after = short_run(REFERENCE.module("model").DiffusionModel)
    return {"before": before, "after": after, "steps": SHORT_RUN_STEPS,
            "precision": Runtime.choose("cpu").precision, "torch": torch.__version__.split("+")[0]}


def reference_sampler_trace():
    from tests.graded.fakes import trace_sampler

    return trace_sampler(REFERENCE.module("sampler").sample)


def reference_flow_pairs() -> dict:
    from tests.graded.fakes import flow_pair_inputs

    pair = REFERENCE.module("flow").flow_matching_pair
    return {kind: pair(*flow_pair_inputs(shape)) for kind, shape in (("images", (1, 4, 4)), ("points", (2,)))}


def reference_flow_trace():
    from tests.graded.fakes import trace_fast_sampler

    return trace_fast_sampler(REFERENCE.module("flow").euler_sample)


def reference_ddim_traces() -> dict:
    from tests.graded.fakes import trace_fast_sampler

    ddim_sample = REFERENCE.module("sampler").ddim_sample
    return {eta: trace_fast_sampler(ddim_sample, eta=eta) for eta in recorded.DDIM_ETAS}


def reference_guided_traces() -> dict:
    from tests.graded.fakes import trace_guided_sampler

    guided_sample = REFERENCE.module("sampler").guided_sample
    return {scale: trace_guided_sampler(guided_sample, scale) for scale in recorded.GUIDANCE_SCALES}


# What a recorded run keeps of its checkpoint: the EMA weights and the record the level tests check (no optimiser).
RUN_RECORD = ("step", "images_seen", "total_steps", "config", "budget", "solution", "model_fingerprint")


def record_run(config: str) -> Path:
    """outputs/<config>-solution/ (a finished reference run of the current code and recipe) into
    src/solution/runs/<config>.pt and its scores into reference_scores.json; returns the file written."""
    source = checkpoint_path(config, REFERENCE)
    if not source.exists():
        raise SystemExit(f"no reference run of {config} to record: run `{command(config, REFERENCE)}` first")
    state = load_checkpoint(source)
    problem = provenance_problem(state, official_config(config), REFERENCE)
    if problem:
        raise SystemExit(f"{source} {problem}: train it again with `{command(config, REFERENCE)} --overwrite`")
    metrics = json.loads((source.parent / "metrics.json").read_text())
    target = reference_run_path(config)
    target.parent.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, {key: state[key] for key in RUN_RECORD} | {"ema": {"model": state["ema"]["model"]}})
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
    values = {"parameters": reference_parameters(), "short_run": reference_short_run()}
    recorded.REFERENCE_JSON.write_text(json.dumps(values, indent=2) + "\n")
    recorded.save_sampler_trace(*reference_sampler_trace())
    recorded.save_flow(reference_flow_pairs(), *reference_flow_trace())
    recorded.save_ddim(reference_ddim_traces())
    recorded.save_guided(reference_guided_traces())
    written = (recorded.REFERENCE_JSON, recorded.SAMPLER_TRACE, recorded.FLOW, recorded.DDIM, recorded.GUIDED)
    print(f"wrote {', '.join(str(path.relative_to(ROOT)) for path in written)}")
    print(json.dumps(values, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
