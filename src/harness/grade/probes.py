"""What the graded tests measure inside a network: each probe runs where the network lives (sandbox.where_it_lives),
in the sandbox's worker for the code under test, in this process for a local one (the harness's own tests, the
mutants). A probe returns plain values, which the tests judge."""

import functools

import torch

from src.harness.grade.sandbox import where_it_lives
from src.harness.loading import check_prediction


@where_it_lives
def checked(cls):
    """`cls` with forward's output checked by loading.check_prediction (one tensor like x, on x's device); one class
    per `cls`, so the caches keyed on it (a run's evaluation, shared by Level 1's two tests) hit across tests."""
    return _checked(cls)


@functools.cache
def _checked(cls):
    def forward(self, x, t, *labels):  # labels: the y of a class-conditional model (Level 6)
        prediction = cls.forward(self, x, t, *labels)
        check_prediction(prediction, x)
        return prediction

    return type(cls.__name__, (cls,), {"forward": forward, "__module__": cls.__module__, "__wrapped__": cls})


@where_it_lives
def parameters_on_meta_device(cls, example: tuple) -> int | None:
    """The parameter count of cls(*example), built without allocating memory; None if it cannot be built so."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in cls(*example).parameters())
    except Exception:  # the real construction in the test reports any error properly
        return None


@where_it_lives
def built(cls, seed: int, *args, **kwargs):
    """cls(*args, **kwargs), its initial weights drawn after torch.manual_seed(seed)."""
    torch.manual_seed(seed)
    return cls(*args, **kwargs)


@where_it_lives
def jittered(model):
    """The model in eval mode with every weight nudged by noise, so zero-initialised layers cannot hide a dependency."""
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn(p.shape, generator=g) * (0.02 + 0.1 * p.abs().mean()))
    return model.eval()


@where_it_lives
def gradients(model, x: torch.Tensor, t: torch.Tensor, *labels) -> dict:
    """Backpropagate mean(model(x, t, *labels)^2) in train mode. Returns {"attached": whether the output requires
    grad, "trainable": the names of the parameters that do, "missing": those that got no gradient, "finite": whether
    every gradient is finite, "total": the sum of |gradient|}."""
    model.train()
    out = model(x, t, *labels)
    trainable = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
    report = {"attached": bool(out.requires_grad), "trainable": [name for name, _ in trainable], "missing": [],
              "finite": True, "total": 0.0}
    if out.requires_grad:
        out.pow(2).mean().backward()
        grads = [p.grad for _, p in trainable if p.grad is not None]
        report |= {"missing": [name for name, p in trainable if p.grad is None],
                   "finite": all(bool(torch.isfinite(g).all()) for g in grads),
                   "total": sum(g.abs().sum().item() for g in grads)}
    return report


@where_it_lives
def size(model) -> dict:
    """{"parameters": the number of parameter elements, "held": elements of every other tensor the network holds
    (buffers, and tensors kept as plain attributes), which count towards its size budget too}."""
    parameters = {id(p): p.numel() for p in model.parameters()}
    held = {}
    for module in model.modules():
        for value in [*module.buffers(recurse=False), *vars(module).values()]:
            for tensor in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(tensor, torch.Tensor) and id(tensor) not in parameters:
                    held[id(tensor)] = tensor.numel()
    return {"parameters": sum(parameters.values()), "held": sum(held.values())}
