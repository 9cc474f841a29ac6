"""The grading policy: every number that decides a grade, in one place, each with the reason for its value.

Points are the exception: they stay on their tests (`@pytest.mark.points(N)`), next to what they reward.
.github/workflows/classroom.yml repeats their sums per Classroom step (`max-score`): it is written from the levels
(`uv run python -m src.harness.instructor.classroom`), and tests/harness/test_grading.py fails when it is out of date.

Changing a value here changes students' grades. The bars of Levels 1 and 3 (THRESHOLDS) were calibrated
(`uv run python -m calibration.calibrate <dataset>`; tests/harness/test_calibration.py keeps a person's verdicts
true); the basics' short run and the sampler trace are compared with recorded reference values
(`uv run python -m tests.graded.record`; tests/harness/test_recorded.py says when they are stale).

Imported by the pytest plugin in every pytest run, before any test: keep it free of torch and of the rest of
the harness (but for src/harness/levels.py, the registry of levels, as light).
"""

import os

from src.harness.levels import LEVELS, autograded_parts

# ------------------------------------------------------------------------------------------------ parts

# The graded parts: each graded test carries one of these markers; the grade table reports per part.
PARTS = {level.part: level.title for level in LEVELS}
# The parts graded online: one or more steps each in GitHub Classroom's workflow, Gradescope's default settings.
AUTOGRADED_PARTS = autograded_parts()

# ----------------------------------------------------------------------------------- running graded tests

# Seconds per graded test that sets no timeout of its own (env KATA_GRADED_TIMEOUT): an endless loop in student
# code fails its test after that and the other tests still run. The tests that train, or evaluate a trained run,
# set their own (`@pytest.mark.timeout`).
DEFAULT_TIMEOUT = int(os.environ.get("KATA_GRADED_TIMEOUT", "120"))
# Parameters beyond which a model is refused before its weights are allocated: such a network cannot be graded in a
# test's time. Far above the real limit (PARAMETER_BUDGET: a few M), so it only stops runaway sizes early.
MAX_PARAMETERS = 50_000_000

# ------------------------------------------------------------------------------------ basics: the model

# A model may have at most this many times the reference's parameters (per official config). The official budget
# fixes the training steps, not the work per step: this leaves room to design a different network, while "a better
# network" cannot simply mean a much bigger one.
PARAMETER_BUDGET = 4

# ----------------------------------------------------------------------------- basics: a short training run

# Training steps of the short run (seed 0, 512 synthetic 28x28 images): the reference's validation loss falls to
# 7% of its start in them (tests/graded/recorded/reference.json), in tens of seconds on a CPU. Changing it changes
# the recorded losses: rerun tests/graded/record.py.
SHORT_RUN_STEPS = 40
# The validation loss must fall below this fraction of its starting value: a loose bar, far above where the
# reference ends, that a model which does not learn (the meta-tests' constant predictor) stays above.
SHORT_RUN_MIN_DROP = 0.5
# ... and end at most this multiple of the reference's loss on the identical run: room for other designs and for
# bf16 against fp32 training on another CPU (the recording itself may move 25% across precisions,
# tests/harness/test_recorded.py), while a model that learns far more slowly than the reference still fails.
SHORT_RUN_REFERENCE_MARGIN = 1.6

# --------------------------------------------------------------------------- the training budget of a level

# The settings that fix how much training a run gets: a level accepts a checkpoint only if it recorded the official
# value of each (tests/graded/runs.py), so a better grade can come from a better network, never from more training.
BUDGET_KEYS = ("data.name", "data.batch_size", "training.epochs", "training.max_steps", "diffusion.objective",
               "diffusion.num_timesteps", "diffusion.schedule", "diffusion.beta_start", "diffusion.beta_end",
               "conditioning.kind", "conditioning.label_dropout", "latent.channels", "latent.epochs",
               "latent.batch_size")

# ------------------------------------------------------------------------------ levels 1 and 3: samples

# Images drawn per evaluation, about 25 per class: few enough to draw on a CPU, and the number the bars were
# calibrated at (the Frechet distance depends on it; real-vs-real FD is measured at the same number). Official
# configs need 2x this many validation images (src/harness/run/config.py).
EVAL_SAMPLES = 256
# Model calls per image (the harness's DPM-Solver++(2M) steps; flow matching's Heun sampler takes 25 steps of two
# calls): fast, and the same for every run so that scores compare; the bars were calibrated at it.
EVAL_STEPS = 50
# A class is "covered" when at least this share of the samples lands in it (6 of 256, a fifth of a class's share
# in the data): a model that draws a class only now and then does not count as drawing it.
COVERED = 0.02

# Calibrated with `uv run python -m calibration.calibrate <dataset>` on real images, the reference, independently
# written student models trained at the official budget and broken generators; the bars are in the README
# ("Sample quality"), the calibration's tables in docs/calibration/<level>.md, and
# tests/harness/test_calibration.py keeps every person's verdict true.
# Per dataset, for recognisable samples: the minimum classes covered, the maximum FD / real-vs-real FD and the
# range of edge strength / real images'; for samples as good as the reference's: the maximum FD / real-vs-real FD.
# copy_ratio: the samples' median distance to their nearest training image, in units of held-out real images' (its
# minimum; quality.copy_ratio). Every honest generator of the calibration scores 1.06 (CIFAR-10's student) to 2.4,
# real test images 1.0, blurred ones 0.86, images in the wrong range 0.69; a memoriser (the exact denoiser of 3,000
# stored training images) and real training images passed off as samples 0.00. Half of 1 stops those and no model
# that generates.
THRESHOLDS = {
    "fashion_mnist": {"classes_covered": 8, "fd_ratio": 17.0, "edge_ratio": (0.72, 1.6), "reference_fd_ratio": 9.0,
                      "copy_ratio": 0.5},
    # Level 7's Fashion-MNIST run, the same networks trained with flow matching: Level 1's recognisable bars agree
    # with a person on that zoo too (flow matching trains the small networks further: they score 8x to 12x where
    # DDPM's scored 12x to 19x). No reference bar: Level 7 grades recognisable samples only.
    "fashion_mnist_flow": {"classes_covered": 8, "fd_ratio": 17.0, "edge_ratio": (0.72, 1.6), "copy_ratio": 0.5},
    # Level 8's latent run, judged on its decoded samples (docs/calibration/level8.md): Level 1's bars, but for the
    # edges. A decoder renders smoother images than pixel diffusion draws: a plain student pair that a person passes
    # scores 0.70x, while every decoder a person finds dim or soft scores 0.52x or less.
    "fashion_mnist_latent": {"classes_covered": 8, "fd_ratio": 17.0, "edge_ratio": (0.6, 1.6), "copy_ratio": 0.5},
    # No reference bar: the one CIFAR-10 student model of the calibration sits too close to the reference to
    # set one with a margin.
    "cifar10": {"classes_covered": 8, "fd_ratio": 8.0, "edge_ratio": (0.72, 1.6), "copy_ratio": 0.5},
    # The two moons of Levels 0, 5 and 7 (src/harness/run/points.py): the maximum Chamfer distance of the samples to
    # held-out points / that between two sets of real points. Calibrated on student-style point models and broken
    # generators, trained with DDPM (sampled by the harness, and by DDIM at eta 0 and 1) and with flow matching
    # (`uv run python -m calibration.points [--config moons_flow | --ddim-eta ETA]`; the tables are in
    # docs/instructors.md). The spiral is not graded.
    "moons": {"chamfer_ratio": 4.5},
}
# Points drawn per evaluation (Level 0): the Chamfer distance between two sets of real points of this size is small
# (about 0.009 on the moons) and steady, and drawing them takes a few seconds.
POINT_EVAL_SAMPLES = 2000



def bars_of(cfg) -> str:
    """The THRESHOLDS entry that judges the samples of a run of `cfg`: "<dataset>_latent" for a latent run (Level 8),
    "<dataset>_<objective>" where the objective has bars of its own on that dataset (fashion_mnist_flow), else its
    dataset's."""
    own = f"{cfg.data.name}_latent" if cfg.latent.channels else f"{cfg.data.name}_{cfg.diffusion.objective}"
    return own if own in THRESHOLDS else cfg.data.name


# Mean confidence is reported but judges nothing: pure noise scores about as high as good samples.

# ------------------------------------------------------------------------------------- level 4: the sampler

# The sampler must follow the reference's trajectory on a fixed model and seed (tests/graded/recorded/):
# x_T within this (the same random draw, so only float noise may separate them) ...
SAMPLER_X_T_ATOL = 1e-5
# ... and every later x_t and x_0 within this: the meta-tests' two correct samplers, whose float32 arithmetic runs
# in another order, stay within 2e-6 of the recording; the posterior variance in place of beta_t moves x_t by 0.1.
SAMPLER_TRAJECTORY_ATOL = 1e-4
# With the exact denoiser of Gaussian data (mean 0.2, std 0.3), the samples' mean and std must be within this of
# the data's: a correct sampler lands within 0.003 of both (16 384 values); a missing sqrt or sigma = beta_t misses
# the std by more than 0.25. Independent of the order of random draws, unlike the trajectory.
GAUSSIAN_MOMENT_TOLERANCE = 0.02

# ------------------------------------------------------------------------------------- level 5: DDIM

# DDIM's steps with the exact denoiser of Gaussian data (mean 0.2, std 0.3), deterministic (eta = 0): the step
# error shrinks with N, and at 200 steps the reference's std lands within 0.007 of the data's (0.025 at 50 steps),
# well inside GAUSSIAN_MOMENT_TOLERANCE.
DDIM_GAUSSIAN_STEPS = 200
# ... and with eta = 1 on all T = 1000 timesteps, where DDIM is DDPM with the posterior variance: within 0.004.
DDIM_STOCHASTIC_GAUSSIAN_STEPS = 1000
# The noise a stochastic DDIM step adds, read off each step of a 10-step run on a fixed model (9 steps x 4096 values,
# divided by sigma of eq. 16): its pooled std within this of 1 and its mean within this of 0 (standard errors 0.004
# and 0.005), and what is left of eps in it (its slope on eps, standard error 0.02) within three times this of 0.
# A sigma without its factor sqrt(1 - abar / abar_next) moves the std by more than 0.1; sigma rather than sigma^2,
# or no sigma^2 at all, in the eps term leaves a slope above 0.5.
DDIM_NOISE_TOLERANCE = 0.05

# ------------------------------------------------------------------------- level 6: classifier-free guidance

# The guidance scales of a class-conditional run's strip and agreement table (guidance.png, metrics.json): w = 0 is
# the unconditional model, 1 the conditional one; 3 is the default scale (conditioning.guidance_scale).
GUIDANCE_SCALES = (0.0, 1.0, 3.0, 7.0)
# Guided samples per class and scale that the agreement counts: 200 per scale, so a share near 90% is measured
# within about 2 points (binomial standard error) ...
AGREEMENT_PER_CLASS = 20
# ... each drawn in this many guided DDIM steps of two model calls: the agreements at 25 and 50 steps differ by
# less than that error, and half the steps halve the minutes a trained run's evaluation takes.
GUIDANCE_STEPS = 25
# A trained class-conditional run (configs/fashion_mnist_cfg.yaml) passes when at least this share of its samples at
# the default scale show the class asked for. Calibrated (`uv run python -m calibration.guidance`) on the zoo trained
# with labels: the plain UNets whose rows a person sees following their class score 53% and 58%, the ConvNet and the
# tiny UNet whose rows are mostly blobs 28%, the reference 81%; 40% leaves the honest students 25% of room ...
GUIDED_AGREEMENT = 0.4
# ... and at most this share at w = 0, the unconditional model, whose samples know no class (chance: 10%; every
# generator of the calibration draws 8% to 13% there).
UNGUIDED_AGREEMENT = 0.25

# ------------------------------------------------------------------------------- level 7: flow matching

# flow_matching_pair must match the reference's recording within this: float32 arithmetic in another order moves
# it by about 1e-7; s = t / T in place of (t + 1) / T moves x_s by 1e-3 (and the rest by far more).
FLOW_PAIR_ATOL = 1e-5
# Euler steps with the exact velocity of Gaussian data: the step error shrinks as 1 / N, and at 100 steps the
# samples' std lands within 0.006 of the data's, well inside GAUSSIAN_MOMENT_TOLERANCE.
FLOW_GAUSSIAN_STEPS = 100

# --------------------------------------------------------------------------------- level 8: latent diffusion

# The latent run's autoencoder must reconstruct held-out images within this RMSE (pixels in [-1, 1]): the
# autoencoders a person passes reconstruct within 0.167, the blurred ones a person fails from 0.232 up
# (docs/calibration/level8.md).
LATENT_RECONSTRUCTION_RMSE = 0.2
# ... and the scaled latents the diffusion trains on must have about unit variance: their std on held-out images.
LATENT_STD = (0.8, 1.25)

# ------------------------------------------------------------------------------------- level 9: steering
# Level 1's trained run steered with the student's sampler at the graded scales of configs/fashion_mnist_steer.yaml
# (20 steered DDIM steps). Calibrated (`uv run python -m calibration.steering`, docs/calibration/level9.md) on the
# reference run, zoo networks and broken ones, each with the reference's sampler and an independently written one.
# Inpainting 50 held-out images, top half kept: the root mean square error on the known half at most this (images
# in [-1, 1]; every steered network lands at 0.095 to 0.122, an unsteered sampler at 0.76) ...
STEERED_INPAINTING_RMSE = 0.25
# ... and at least this share of them in their original's class by the shipped classifier, the bar on what is drawn
# (the reference 68%, a plain student UNet 64%; the untrained and barely trained networks, whose drawn halves are
# noise, 22% and 34%; the binomial error of 50 images near 50% is 7 points).
STEERED_INPAINTING_KEPT_CLASS = 0.4
# Class steering of the unconditional model, 10 samples per class: at least this share in the class asked for
# (chance 10%; a correct sampler reaches 50% to 73% on every network, one that never steers 12%). The classifier
# that steers is the one that counts, and a network that draws no garments fools it, so the test grades only a run
# that passes Level 1's recognisable bar.
STEERED_AGREEMENT = 0.4
