"""Where a run computes: the device, and the precision its forward passes use there."""

import os
import platform
from contextlib import nullcontext
from dataclasses import dataclass

import torch


def pick_device(name: str = "auto") -> torch.device:
    """auto: CUDA if available, then Apple MPS, then CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for, but PyTorch sees no CUDA GPU; use --device auto or cpu")
    if name == "mps" and not torch.backends.mps.is_available():
        raise RuntimeError("--device mps was asked for, but this machine has no Apple MPS backend; use --device auto")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: bfloat16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX-512 bf16/AMX), else fp32."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if device.type == "cpu":
        return "bf16" if torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported() else "fp32"
    return "fp32"


def describe_cpu() -> str:
    """The CPU's name and the vector instructions PyTorch uses on it, e.g. "AMD EPYC, AVX512, fast bfloat16"."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    fast_bf16 = resolve_precision("auto", torch.device("cpu")) == "bf16"
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, {'fast' if fast_bf16 else 'no fast'} bfloat16"


@dataclass(frozen=True)
class Runtime:
    """A device and a resolved precision ("fp32" or "bf16", bfloat16 autocast)."""

    device: torch.device
    precision: str

    @classmethod
    def choose(cls, device: str = "auto", precision: str = "auto") -> "Runtime":
        """The device named (auto: the fastest present) and the precision setting resolved for it."""
        chosen = pick_device(device)
        if chosen.type == "cuda" and "LOCAL_RANK" in os.environ:  # one GPU per process under torchrun
            chosen = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
            torch.cuda.set_device(chosen)
        return cls(chosen, resolve_precision(precision, chosen))

    def autocast(self):
        """The context every forward pass runs in."""
        if self.precision == "bf16":
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return nullcontext()
