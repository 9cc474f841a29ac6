"""README figures drawn from more than one run or sampler: `uv run python -m calibration.readme_figures`.

Needs the reference runs of configs/moons.yaml, configs/moons_flow.yaml and configs/fashion_mnist.yaml (main.py
--solution; trained on demand). Writes docs/images/moons_paths.png, the paths of the same starting points under
DDPM (the harness's DPM-Solver++ sampler) and under flow matching (its Heun sampler), which Level 7's chapter
shows, and docs/images/ddim_steps.png, the reference's DDPM and DDIM samplers from the same noise (Level 5).
"""

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from src.harness.loading import REFERENCE  # noqa: E402
from src.harness.paths import ROOT  # noqa: E402
from src.harness.run.config import official_config
from src.harness.run.data import load_data  # noqa: E402
from src.harness.run.figures import image_grid  # noqa: E402
from src.harness.run.objective import make_objective  # noqa: E402
from src.harness.run.points import paths_picture  # noqa: E402
from tests.graded.runs import reference_model  # noqa: E402

IMAGES = ROOT / "docs" / "images"
DDIM_ROWS = [("DDPM, 1000 steps", None, None), ("DDIM, eta = 1, 50 steps", 50, 1.0),
             ("DDIM, eta = 0, 50 steps", 50, 0.0), ("DDIM, eta = 0, 10 steps", 10, 0.0)]


def moons_paths() -> None:
    runs = []
    for config, title in (("moons", "DDPM, DPM-Solver++"), ("moons_flow", "flow matching, Heun")):
        model, run_cfg = reference_model(config)
        runs.append((title, model, make_objective(run_cfg.diffusion, source=REFERENCE)))
    data = load_data(official_config("moons").data).val
    paths_picture(runs, data).save(IMAGES / "moons_paths.png")
    print(f"wrote {IMAGES / 'moons_paths.png'}")


def ddim_steps(num_images: int = 10) -> None:
    """One row per sampler, every row from the same seed, so the same starting noise x_T."""
    model, run_cfg = reference_model("fashion_mnist")
    schedule = make_objective(run_cfg.diffusion).schedule
    samplers = REFERENCE.module("sampler")
    shape = (num_images, 1, 28, 28)
    fig, axes = plt.subplots(len(DDIM_ROWS), 1, figsize=(num_images * 0.62, len(DDIM_ROWS) * 0.82))
    for ax, (title, steps, eta) in zip(axes, DDIM_ROWS):
        generator = torch.Generator().manual_seed(3)
        if steps is None:
            images = samplers.sample(model.eval(), schedule, shape, generator)
        else:
            images = samplers.ddim_sample(model.eval(), schedule, shape, generator, num_steps=steps, eta=eta)
        row = torch.cat(list(torch.nn.functional.pad(images, (1, 1, 1, 1), value=1.0)), dim=-1)  # (1, 30, 30 N)
        ax.imshow(image_grid(row[None], padding=0), cmap="gray")
        ax.set_title(title, fontsize=8, loc="left", pad=2)
        ax.axis("off")
    fig.tight_layout(pad=0.2)
    fig.savefig(IMAGES / "ddim_steps.png", dpi=110)
    plt.close(fig)
    print(f"wrote {IMAGES / 'ddim_steps.png'}")


if __name__ == "__main__":
    moons_paths()
    ddim_steps()
