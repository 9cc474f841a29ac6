"""Train and sample a diffusion model: `uv run python main.py --config configs/fashion_mnist.yaml [--solution]`."""

from src.harness.run.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
