"""The levels of the kata, one entry each: the part of the grade table it is, the student files it grades, the trained
runs its tests grade, its steps in GitHub Classroom and its chapter. Every list of the harness that names levels,
student files or graded configs is derived from here (policy.PARTS and AUTOGRADED_PARTS, the Gradescope
autograder's files and checkpoints, loading.STUDENT_FILES and its stub messages, the grading plugin's fixtures,
.github/workflows/classroom.yml via src/harness/instructor/classroom.py). A new level is one entry of LEVELS (and of
STUDENT_FILES for a new student file) beside its own files: tests/harness/test_new_level.py adds one.

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
class StudentFile:
    """A file the student writes, src/<name>.py (the reference's: src/solution/<name>.py), and what the one-line
    message for its stub (a NotImplementedError raised there) asks."""

    name: str
    asks: str  # "" for the stub's own message (the sampler's names the function and its level)
    otherwise: str = ""  # the way around it; empty: "run with --solution", where the reference is present
    functions: tuple[str, ...] = ()  # graded functions: each is a fixture of the grading plugin of the same name


STUDENT_FILES = (
    StudentFile("point_model", "implement PointModel there (Level 0: docs/levels/level0.md)"),
    StudentFile("model", "implement DiffusionModel there (Level 1: docs/levels/level1.md)"),
    StudentFile("sampler", "", "run without --custom-sampler and sampling.sampler to draw the final samples with the "
                               "harness's own sampler", functions=("sample", "ddim_sample", "guided_sample")),
    StudentFile("flow", "implement flow_matching_pair and euler_sample there (Level 7: docs/levels/level7.md)",
                functions=("flow_matching_pair", "euler_sample")),
    StudentFile("autoencoder", "implement Autoencoder, sample_latent, autoencoder_loss and latent_scale there "
                               "(Level 8: docs/levels/level8.md)",
                functions=("sample_latent", "autoencoder_loss", "latent_scale")),
    StudentFile("steer", "implement steered_sample there (Level 9: docs/levels/level9.md)",
                functions=("steered_sample",)),
)


@dataclass(frozen=True)
class ClassroomStep:
    """One step of GitHub Classroom's workflow: `src.harness.grade.verdict PART [-k SELECT]`, all or nothing. The first
    step (in the order of LEVELS) that grades a run trains it first, as its setup command."""

    name: str
    select: str = ""  # a pytest -k expression within the level's tests; its words also name the step
    runs: tuple[str, ...] | None = None  # the configs of the trained runs its tests grade; None: all its level's
    minutes: int = 10  # the step's timeout, beside what training its runs adds (classroom.py)


@dataclass(frozen=True)
class Level:
    part: str  # the pytest marker of its graded tests, and its row of the grade table
    title: str
    files: tuple[str, ...]  # the student files (StudentFile.name) its tests grade: a forbidden import there zeroes it
    runs: tuple[TrainedRun, ...] = ()
    steps: tuple[ClassroomStep, ...] = ()  # empty: not autograded online (Classroom, Gradescope's default parts)
    chapter: str = ""  # its chapter for students, linked from the README's table of levels; "": docs/levels/<part>.md

    @property
    def chapter_path(self) -> str:
        return self.chapter or f"docs/levels/{self.part}.md"


# Minutes of reference training the full suite (`pytest --solution`, CI) may do from scratch, summed over the runs
# `retrained_in_ci`: they train on one core beside the other tests (tests/harness/conftest.py), which take about
# 12 minutes on the other (docs/performance.md), and the suite must fit 30 minutes in float32 on a 2-core CPU and
# 10 with fast bfloat16. A level whose run does not fit is graded on its recording alone.
CI_TRAINING_BUDGET_MINUTES = {"fp32": 20.0, "bf16": 6.5}

# The moons configs train in float32 whatever the CPU: 36 s on one Sapphire Rapids thread.
MOONS = TrainedRun("moons", fp32_minutes=0.6, bf16_minutes=0.6)
FASHION_MNIST = TrainedRun("fashion_mnist", fp32_minutes=17.0, bf16_minutes=6.4, retrained_in_ci=True)

LEVELS = (
    Level("level0", "2-D points: the point model and its samples", ("point_model",), (MOONS,), steps=(
        ClassroomStep("Level 0 (train your point model on the two moons, then its contract and samples)"),)),
    Level("basics", "the model's contract and a short training run", ("model",), steps=(
        ClassroomStep("Basics (model contract, loss decreases)", minutes=15),), chapter="docs/levels/level1.md"),
    Level("level1", "Fashion-MNIST samples, up to reference quality", ("model",), (FASHION_MNIST,), steps=(
        ClassroomStep("Level 1 (train your model on Fashion-MNIST, then recognisable samples)", "recognisable"),
        ClassroomStep("Level 1 (samples as good as the reference's, from the same run)", "as_good_as"))),
    Level("level2", "validation loss at most the reference's", ("model",), (FASHION_MNIST,), steps=(
        ClassroomStep("Level 2 (the validation loss of Level 1's run against the reference's)"),)),
    Level("level3", "recognisable CIFAR-10 samples", ("model",),
          (TrainedRun("cifar10", fp32_minutes=120.0, bf16_minutes=48.0, recorded=False),)),
    Level("level4", "your own DDPM sampler", ("sampler",), steps=(
        ClassroomStep("Level 4 (your DDPM sampler)"),)),
    Level("level5", "your own DDIM sampler", ("sampler", "point_model"), (MOONS,), steps=(
        ClassroomStep("Level 5 (your DDIM sampler; its last test samples Level 0's moons run)"),)),
    Level("level6", "class conditioning and classifier-free guidance", ("model", "sampler"),
          (TrainedRun("fashion_mnist_cfg", fp32_minutes=11.4, bf16_minutes=2.6),), steps=(
        ClassroomStep("Level 6 (the class-conditional contract of your model and your guided sampler)",
                      "not trained_run", runs=()),
        ClassroomStep("Level 6 (train your model on Fashion-MNIST with labels, then its guided samples)",
                      "trained_run"))),
    Level("level7", "flow matching: its pair, Euler sampler, 2-D and Fashion-MNIST runs",
          ("flow", "model", "point_model"),
          (TrainedRun("moons_flow", fp32_minutes=0.6, bf16_minutes=0.6),
           TrainedRun("fashion_mnist_flow", fp32_minutes=17.0, bf16_minutes=6.0)), steps=(
        ClassroomStep("Level 7 (train your point model with your flow matching on the two moons, then the flow "
                      "tests)", "not fashion_mnist", runs=("moons_flow",)),
        ClassroomStep("Level 7 (train your model on Fashion-MNIST with your flow matching, then its samples)",
                      "fashion_mnist", runs=("fashion_mnist_flow",)))),
    Level("level8", "latent diffusion with your autoencoder", ("autoencoder", "model"),
          # fp32: 8.7 min on one Zen 4 core; 12 is that scaled by Level 1's Zen 3 / Zen 5 ratio
          (TrainedRun("fashion_mnist_latent", fp32_minutes=12.0, bf16_minutes=5.1),), steps=(
        ClassroomStep("Level 8 (your autoencoder's contract and its loss)", "not trained_run", runs=()),
        ClassroomStep("Level 8 (train your autoencoder, then your model on its latents: reconstructions and "
                      "samples)", "trained_run"))),
    Level("level9", "steering a trained model at inference", ("steer", "model"),
          (FASHION_MNIST,), steps=(
        ClassroomStep("Level 9 (your steered sampler)", "not trained_run", runs=()),
        ClassroomStep("Level 9 (steer your Level 1 run: inpainting and classes)", "trained_run"))),
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


def autograded_parts(levels=LEVELS) -> tuple[str, ...]:
    """The parts graded online: those with Classroom steps, which Gradescope's default settings grade too (not
    Level 3: it needs the CIFAR-10 data and, in Classroom, a CIFAR-10 run of about an hour on a CPU)."""
    return tuple(level.part for level in levels if level.steps)


def parts_grading(file: str, levels=LEVELS) -> set[str]:
    """The parts whose tests grade the student file `file` (a StudentFile.name)."""
    return {level.part for level in levels if file in level.files}
