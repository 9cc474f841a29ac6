"""Train and sample a diffusion model: `uv run python main.py --config configs/fashion_mnist.yaml [--solution]`."""

import sys

if __name__ == "__main__":
    try:
        from src.harness.run.cli import main
    except KeyboardInterrupt:  # Ctrl-C while torch is still loading: nothing has been written yet
        print("error: stopped by Ctrl-C while starting; nothing was written", file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(main())
