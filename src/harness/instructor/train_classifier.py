"""Train a shipped sample-quality classifier: `uv run python -m src.harness.instructor.train_classifier fashion_mnist`.

Fixed seed, whole-tensor data in memory, random translations and flips, SGD with a one-cycle learning
rate. Writes src/harness/classifiers/<dataset>.pt and, beside it, <dataset>.json with the test accuracy.
"""

import argparse
import json
import time

import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from src.harness.run.config import DataConfig
from src.harness.run.data import load_data, to_model_range
from src.harness.run.quality import CLASSIFIERS, Classifier, classifier_path, classify
from src.harness.run.runtime import Runtime

RECIPES = {  # dataset -> epochs, batch size, peak learning rate, translation in pixels
    "fashion_mnist": dict(epochs=8, batch_size=256, lr=0.1, shift=2),
    "cifar10": dict(epochs=10, batch_size=256, lr=0.1, shift=4),
}


def augment(x: torch.Tensor, shift: int, generator: torch.Generator) -> torch.Tensor:
    """Random translation by up to `shift` pixels (borders filled with -1) and random horizontal flips."""
    n, _, h, w = x.shape
    offsets = torch.randint(-shift, shift + 1, (n, 2), generator=generator).float()
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = theta[:, 1, 1] = 1
    theta[:, 0, 2], theta[:, 1, 2] = offsets[:, 0] * 2 / w, offsets[:, 1] * 2 / h
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x + 1, grid, mode="nearest", padding_mode="zeros", align_corners=False) - 1
    flip = torch.rand(n, generator=generator) < 0.5
    return torch.where(flip.view(-1, 1, 1, 1), x.flip(-1), x)


def train_classifier(dataset: str, root: str, epochs: int | None = None, seed: int = 0) -> dict:
    recipe = dict(RECIPES[dataset], **({"epochs": epochs} if epochs else {}))
    data_cfg = OmegaConf.merge(OmegaConf.structured(DataConfig),
                               {"name": dataset, "root": root, "verify_md5": False, "num_val": 10_000})
    data = load_data(data_cfg)  # val = the whole test split, shuffled
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    autocast = Runtime.choose("cpu").autocast
    model = Classifier(*CLASSIFIERS[dataset])
    steps_per_epoch = len(data.train) // recipe["batch_size"]
    optimizer = torch.optim.SGD(model.parameters(), lr=recipe["lr"], momentum=0.9, nesterov=True, weight_decay=5e-4)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, recipe["lr"], total_steps=recipe["epochs"] * steps_per_epoch,
                                                   pct_start=0.25)
    tic = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        model.train()
        order = torch.randperm(len(data.train), generator=generator)
        for step in range(steps_per_epoch):
            index = order[step * recipe["batch_size"]:(step + 1) * recipe["batch_size"]]
            x = augment(to_model_range(data.train[index]), recipe["shift"], generator)
            with autocast():
                loss = F.cross_entropy(model(x), data.train_labels[index], label_smoothing=0.1)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
        accuracy = test_accuracy(model, data)
        print(f"epoch {epoch + 1}/{recipe['epochs']}: loss {loss.item():.3f}, test accuracy {accuracy:.4f}, "
              f"{time.perf_counter() - tic:.0f} s", flush=True)
    path = classifier_path(dataset)
    path.parent.mkdir(exist_ok=True)
    torch.save(model.state_dict(), path)
    card = {"dataset": dataset, "test_accuracy": round(accuracy, 4), "test_images": len(data.val), "seed": seed,
            **recipe, "train_seconds": round(time.perf_counter() - tic), "torch": torch.__version__,
            "command": f"uv run python -m src.harness.instructor.train_classifier {dataset}"}
    path.with_suffix(".json").write_text(json.dumps(card, indent=2) + "\n")
    return card


def test_accuracy(model, data) -> float:
    model.eval()
    probabilities, _ = classify(model, to_model_range(data.val))
    return (probabilities.argmax(-1) == data.val_labels).double().mean().item()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset", choices=sorted(CLASSIFIERS))
    parser.add_argument("--root", default=OmegaConf.structured(DataConfig).root, help="the data folder")
    parser.add_argument("--epochs", type=int, default=None)
    args = parser.parse_args()
    print(json.dumps(train_classifier(args.dataset, args.root, args.epochs), indent=2))
