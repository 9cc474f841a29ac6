"""`main.py --benchmark`: training and sampling throughput of the harness beside a textbook loop, same model.

The textbook loop is the usual tutorial code: a Dataset that turns each image into a PIL image and runs
torchvision transforms, a DataLoader, float32 throughout, and DDPM sampling with one model call per
timestep. Sampling speed is timed over a fixed number of model calls and scaled to the sampler's length.
"""

import time
from contextlib import nullcontext

import torch
from torch.utils.data import DataLoader, Dataset

from src.harness.run.data import TrainBatches
from src.harness.run.objective import NoisePrediction
from src.harness.run.runtime import Runtime
from src.harness.run.schedule import NoiseSchedule

TRAIN_STEPS = 6  # timed steps, after WARMUP_STEPS untimed ones
WARMUP_STEPS = 2
SAMPLE_CALLS = 10  # timed model calls per sampler


class TextbookDataset(Dataset):
    """Per-item PIL conversion and transforms, as in most tutorials."""

    def __init__(self, images: torch.Tensor):
        from torchvision import transforms

        self.images = images
        self.transform = transforms.Compose([
            transforms.RandomHorizontalFlip(), transforms.ToTensor(),
            transforms.Normalize([0.5] * images.shape[1], [0.5] * images.shape[1])])

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        from PIL import Image

        image = self.images[i].permute(1, 2, 0).squeeze(-1).numpy()
        return self.transform(Image.fromarray(image))


def _train_rate(model, objective, next_batch, autocast, device) -> float:
    """Images per second over TRAIN_STEPS AdamW steps of the epsilon loss."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    for step in range(WARMUP_STEPS + TRAIN_STEPS):
        if step == WARMUP_STEPS:
            _sync(device)
            tic, images = time.perf_counter(), 0
        x0 = next_batch().to(device)
        t, noise = objective.draw(x0, generator=None)
        with autocast():
            loss = objective.loss(model, x0, t, noise)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= WARMUP_STEPS:
            images += len(x0)
    _sync(device)
    return images / (time.perf_counter() - tic)


@torch.no_grad()
def _sample_rate(model, shape, model_calls: int, autocast, device) -> float:
    """Images per second of a sampler that calls the model `model_calls` times for a batch of `shape`."""
    model.eval()
    x = torch.randn(shape, device=device)
    t = torch.full((shape[0],), 500, dtype=torch.long, device=device)
    with autocast():
        model(x, t)  # warm-up
        _sync(device)
        tic = time.perf_counter()
        for _ in range(SAMPLE_CALLS):
            model(x, t)
        _sync(device)
    seconds_per_call = (time.perf_counter() - tic) / SAMPLE_CALLS
    return shape[0] / (seconds_per_call * model_calls)


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def benchmark(cfg, model_factory, data, runtime: Runtime) -> dict:
    """Measure both loops on fresh copies of the same model; print a table and the speedup line."""
    device, precision = runtime.device, runtime.precision
    schedule = NoiseSchedule.from_config(cfg.diffusion, device)
    objective = NoisePrediction(schedule)
    batch_size = cfg.data.batch_size
    batches = TrainBatches(data.train, batch_size, cfg.seed, cfg.data.hflip, device)
    step = iter(range(10**9))
    harness_steps = schedule.num_timesteps if cfg.sampling.sampler == "ddpm" else cfg.sampling.steps
    shape = (cfg.sampling.num_samples, *data.sample_shape)
    results = {"train_harness": _train_rate(model_factory().to(device), objective, lambda: batches(next(step)),
                                            runtime.autocast, device)}
    # Created only now: DataLoader workers start prefetching at once and would slow the harness's timing.
    loader = iter(DataLoader(TextbookDataset(data.train), batch_size=batch_size, shuffle=True, num_workers=2,
                             drop_last=True))
    results |= {
        "train_textbook": _train_rate(model_factory().to(device), objective, lambda: next(loader), nullcontext,
                                      device),
        "sample_harness": _sample_rate(model_factory().to(device), shape, harness_steps, runtime.autocast, device),
        "sample_textbook": _sample_rate(model_factory().to(device), shape, schedule.num_timesteps, nullcontext,
                                        device),
    }
    print(f"{'':<16}{'harness':>12}   {'textbook':>12}")
    print(f"{'train images/s':<16}{results['train_harness']:>12.1f}   {results['train_textbook']:>12.1f}"
          f"   (harness: in-memory uint8 batches, {precision}; textbook: DataLoader + PIL transforms, fp32)")
    print(f"{'sample images/s':<16}{results['sample_harness']:>12.2f}   {results['sample_textbook']:>12.2f}"
          f"   (harness: {cfg.sampling.sampler}, {harness_steps} model calls, {precision}; "
          f"textbook: DDPM, {schedule.num_timesteps} calls, fp32; batch {shape[0]})")
    results["train_speedup"] = results["train_harness"] / results["train_textbook"]
    results["sample_speedup"] = results["sample_harness"] / results["sample_textbook"]
    print(f"speedup vs textbook: train {results['train_speedup']:.1f}x, sample {results['sample_speedup']:.1f}x")
    return results
