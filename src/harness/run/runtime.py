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


# Set to fp32 (or bf16), it decides what "auto" means in every run and test: how to measure the float32 path, the one
# most laptops take, on a CPU with fast bfloat16 (`KATA_PRECISION=fp32 uv run pytest --solution`).
PRECISION_ENV = "KATA_PRECISION"


def resolve_precision(precision: str, device: torch.device) -> str:
    """auto: $KATA_PRECISION if set, else bfloat16 where the hardware runs it fast (CUDA with bf16, CPUs with AVX-512
    bf16/AMX), else fp32."""
    if precision != "auto":
        return precision
    forced = os.environ.get(PRECISION_ENV)
    if forced:
        if forced not in ("fp32", "bf16"):
            raise RuntimeError(f"{PRECISION_ENV}={forced!r} is not a precision: set it to fp32 or bf16, or unset it")
        return forced
    return "bf16" if fast_bfloat16(device) else "fp32"


def fast_bfloat16(device: torch.device) -> bool:
    """Whether the hardware runs bfloat16 fast: CUDA with bf16, CPUs with AVX-512 bf16 or AMX. oneDNN also runs
    bfloat16 on AVX-512 CPUs without those instructions, by conversion, 3.8 times slower than float32 (a training
    step of the reference on an Intel Xeon, family 6, model 207, whose VM hides AMX): where the CPU lists its flags,
    they decide."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        supported = torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported()
        flags = cpu_flags()
        return supported and (flags is None or bool(flags & {"avx512_bf16", "amx_bf16"}))
    return False


def cpu_flags() -> set[str] | None:
    """The x86 CPU's feature flags from /proc/cpuinfo (Linux), or None where it does not list them."""
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            line = next((line for line in cpuinfo if line.startswith("flags")), None)
    except OSError:
        return None
    return set(line.split(":", 1)[1].split()) if line else None


def describe_cpu() -> str:
    """The CPU's name and the vector instructions PyTorch uses on it, e.g. "AMD EPYC, AVX512, fast bfloat16"."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            name = next(line.split(":", 1)[1].strip() for line in cpuinfo if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    fast = fast_bfloat16(torch.device("cpu"))
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}, {'fast' if fast else 'no fast'} bfloat16"


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
