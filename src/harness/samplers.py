"""Samplers by name: each is a function sample(model, schedule, shape, generator) -> x_0 in [-1, 1]."""

from src.harness.loading import import_implementation
from src.solution.sampler import sample as ddpm

SAMPLERS = {
    "ddpm": ddpm,
}


def get_sampler(name: str, custom: bool = False):
    """The registered sampler `name`, or with custom=True the student's src/sampler.py."""
    return import_implementation("sampler").sample if custom else SAMPLERS[name]
