"""Records the reference values the graded tests compare with (instructor repository only).

    uv run python -m src.harness.record_reference

rewrites tests/graded/recorded/: the reference DDPM and DDIM samplers' model calls on the fixed RecordingModel
(tests/graded/fakes.py) and seed, the guided sampler's on the fixed ConditionalRecordingModel, the reference flow_matching_pair on fixed inputs and its Euler sampler's model calls,
the reference model's parameter count per official config, and the losses of test_training's short run of the
reference. The student release ships these values, not src/solution/.
tests/harness/test_recorded.py recomputes each of them and fails when one is stale.
(src/harness/reference_scores.json, the full runs' validation loss and sample scores, is written by hand
from a reference run's metrics.json; the same test checks its validation loss against a reference run.)
"""

import json
import tempfile
from pathlib import Path

import torch

from src.harness.loading import build_model, import_implementation
from src.harness.paths import ROOT, official_config
from src.harness.policy import SHORT_RUN_STEPS
from src.harness.runtime import Runtime
from tests.graded import recorded

DATASETS = ("fashion_mnist", "cifar10")


def reference_parameters() -> dict[str, int]:
    return {dataset: sum(p.numel() for p in build_model(official_config(dataset), solution=True).parameters())
            for dataset in DATASETS}


def reference_short_run() -> dict:
    from tests.graded.test_training import _short_run

    with tempfile.TemporaryDirectory() as workdir:
        before, after = _short_run(import_implementation("model", solution=True).DiffusionModel, Path(workdir))
    return {"before": before, "after": after, "steps": SHORT_RUN_STEPS,
            "precision": Runtime.choose("cpu").precision, "torch": torch.__version__.split("+")[0]}


def reference_sampler_trace():
    from tests.graded.fakes import trace_sampler

    return trace_sampler(import_implementation("sampler", solution=True).sample)


def reference_flow_pairs() -> dict:
    from tests.graded.fakes import flow_pair_inputs

    pair = import_implementation("flow", solution=True).flow_matching_pair
    return {kind: pair(*flow_pair_inputs(shape)) for kind, shape in (("images", (1, 4, 4)), ("points", (2,)))}


def reference_flow_trace():
    from tests.graded.fakes import trace_fast_sampler

    return trace_fast_sampler(import_implementation("flow", solution=True).euler_sample)


def reference_ddim_traces() -> dict:
    from tests.graded.fakes import trace_fast_sampler

    ddim_sample = import_implementation("sampler", solution=True).ddim_sample
    return {eta: trace_fast_sampler(ddim_sample, eta=eta) for eta in recorded.DDIM_ETAS}


def reference_guided_traces() -> dict:
    from tests.graded.fakes import trace_guided_sampler

    guided_sample = import_implementation("sampler", solution=True).guided_sample
    return {scale: trace_guided_sampler(guided_sample, scale) for scale in recorded.GUIDANCE_SCALES}


def main() -> int:
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
