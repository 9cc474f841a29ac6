"""README figures drawn from more than one run: `uv run python -m calibration.readme_figures`.

Needs the reference runs of configs/moons.yaml and configs/moons_flow.yaml (main.py --solution, a minute each);
writes docs/images/moons_paths.png: the paths of the same starting points under DDPM (its DDIM sampler) and under
flow matching (its Heun sampler), which Level 7's chapter shows.
"""

from src.harness.data import load_data
from src.harness.objective import make_objective
from src.harness.paths import ROOT, official_config
from src.harness.points import paths_picture
from tests.graded.runs import reference_model

IMAGES = ROOT / "docs" / "images"


def main() -> None:
    runs = []
    for config, title in (("moons", "DDPM (noise prediction), DDIM"), ("moons_flow", "flow matching, Heun")):
        model, run_cfg = reference_model(config)
        runs.append((title, model, make_objective(run_cfg.diffusion, solution=True)))
    data = load_data(official_config("moons").data).val
    paths_picture(runs, data).save(IMAGES / "moons_paths.png")
    print(f"wrote {IMAGES / 'moons_paths.png'}")


if __name__ == "__main__":
    main()
