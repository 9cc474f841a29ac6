"""The levels of the kata, one entry each: the part of the grade table it is, and the trained runs its tests grade.

A trained run is a config whose checkpoint (`main.py --config configs/<config>.yaml`) a level's tests load. For
the reference (`pytest --solution`) each run is recorded once, EMA weights only, in src/solution/runs/
(`uv run python -m tests.graded.record --runs`), so the suite grades a real reference run without
training it; the runs marked `retrained_in_ci` are also trained from scratch by the full suite and compared with
their recording (tests/harness/test_reference_runs.py). Their measured cost is declared here, and
tests/harness/test_reference_runs.py fails when the suite's retraining would exceed CI_TRAINING_BUDGET_MINUTES.

Imported by the pytest plugin before any test: keep it free of torch and of the rest of the harness.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class TrainedRun:
    """A run a level grades, with what the reference's run (`main.py --config configs/<config>.yaml --solution`)
    costs: minutes on a 2-core CPU, as measured (docs/performance.md)."""

    config: str
    fp32_minutes: float  # float32, the slowest CPU measured (what a laptop without fast bfloat16 pays)
    bf16_minutes: float  # bfloat16 autocast on a CPU with fast bfloat16
    recorded: bool = True  # src/solution/runs/<config>.pt holds the reference's run; False: too dear to record
    retrained_in_ci: bool = False  # the full suite also trains it from scratch and compares it with the recording


@dataclass(frozen=True)
class Level:
    part: str  # the pytest marker of its graded tests, and its row of the grade table
    title: str
    runs: tuple[TrainedRun, ...] = ()


# Minutes of reference training the full suite (`pytest --solution`, CI) may do from scratch, summed over the runs
# `retrained_in_ci`: they train on one core beside the other tests (tests/harness/conftest.py), which take about
# 12 minutes on the other (docs/performance.md), and the suite must fit 30 minutes in float32 on a 2-core CPU and
# 10 with fast bfloat16. A level whose run does not fit is graded on its recording alone.
CI_TRAINING_BUDGET_MINUTES = {"fp32": 20.0, "bf16": 6.5}

# The moons configs train in float32 whatever the CPU: 36 s on one Sapphire Rapids thread.
MOONS = TrainedRun("moons", fp32_minutes=0.6, bf16_minutes=0.6)
FASHION_MNIST = TrainedRun("fashion_mnist", fp32_minutes=17.0, bf16_minutes=6.4, retrained_in_ci=True)

LEVELS = (
    Level("level0", "2-D points: the point model and its samples", (MOONS,)),
    Level("basics", "the model's contract and a short training run"),
    Level("level1", "Fashion-MNIST samples, up to reference quality", (FASHION_MNIST,)),
    Level("level2", "validation loss at most the reference's", (FASHION_MNIST,)),
    Level("level3", "recognisable CIFAR-10 samples",
          (TrainedRun("cifar10", fp32_minutes=120.0, bf16_minutes=48.0, recorded=False),)),
    Level("level4", "your own DDPM sampler"),
    Level("level5", "your own DDIM sampler", (MOONS,)),
    Level("level6", "class conditioning and classifier-free guidance",
          (TrainedRun("fashion_mnist_cfg", fp32_minutes=11.4, bf16_minutes=2.6),)),
    Level("level7", "flow matching: its pair, Euler sampler, 2-D and Fashion-MNIST runs",
          (TrainedRun("moons_flow", fp32_minutes=0.6, bf16_minutes=0.6),
           TrainedRun("fashion_mnist_flow", fp32_minutes=17.0, bf16_minutes=6.0))),
)


def trained_runs(levels=LEVELS) -> dict[str, TrainedRun]:
    """{config: run} of every run some level grades, each once (Levels 1 and 2 share theirs, as do 0 and 5)."""
    return {run.config: run for level in levels for run in level.runs}


def over_budget(levels=LEVELS, budget=None) -> list[str]:
    """Why the full suite's retraining (the runs `retrained_in_ci`, each once) exceeds CI_TRAINING_BUDGET_MINUTES,
    one reason per precision; empty when it fits."""
    budget = budget or CI_TRAINING_BUDGET_MINUTES
    retrained = [run for run in trained_runs(levels).values() if run.retrained_in_ci]
    reasons = []
    for precision, minutes in budget.items():
        cost = sum(getattr(run, f"{precision}_minutes") for run in retrained)
        if cost > minutes:
            names = ", ".join(f"{run.config} ({getattr(run, f'{precision}_minutes'):g} min)" for run in retrained)
            reasons.append(f"the suite would retrain {names} in {precision}: {cost:g} minutes, over its budget of "
                           f"{minutes:g}; record the run instead (retrained_in_ci=False) or make it cheaper")
    return reasons
