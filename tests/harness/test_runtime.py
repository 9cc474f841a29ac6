"""Device and precision: auto picks CUDA, then Apple MPS, then the CPU, each at the precision that is fast there."""

import argparse

import pytest
import torch

from src.harness.run.cli import join_processes
from src.harness.run.distributed import DistributedError
from src.harness.run import runtime
from src.harness.run.runtime import Runtime, describe_cpu, pick_device, resolve_precision


def _machine(monkeypatch, cuda: bool, mps: bool, bf16: bool = True):
    monkeypatch.delenv("KATA_PRECISION", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *args, **kwargs: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda, mps, device", [(True, False, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_picks_cuda_then_mps_then_the_cpu(monkeypatch, cuda, mps, device):
    _machine(monkeypatch, cuda, mps)
    assert pick_device("auto").type == device


@pytest.mark.parametrize("device, bf16, precision", [
    ("cuda", True, "bf16"), ("cuda", False, "fp32"),  # bfloat16 autocast on GPUs that have it (Ampere and later)
    ("mps", True, "fp32"),  # Apple GPUs: float32
])
def test_auto_precision_is_the_fast_one_on_each_device(monkeypatch, device, bf16, precision):
    _machine(monkeypatch, cuda=device == "cuda", mps=device == "mps", bf16=bf16)
    assert resolve_precision("auto", torch.device(device)) == precision
    assert resolve_precision("fp32", torch.device(device)) == "fp32"


def test_auto_precision_is_fp32_off_bf16_hardware(monkeypatch):
    monkeypatch.delenv("KATA_PRECISION", raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: False)
    assert Runtime.choose("cpu", "auto").precision == "fp32"
    assert Runtime.choose("cpu", "bf16").precision == "bf16"
    assert "no fast bfloat16" in describe_cpu()


def test_auto_precision_is_fp32_on_avx512_without_bfloat16_instructions(monkeypatch):
    """oneDNN says bfloat16 is supported there, but converts it: 3.8 times slower than float32."""
    monkeypatch.delenv("KATA_PRECISION", raising=False)
    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx2", "avx512f", "avx512bw", "avx512_vnni"})
    assert Runtime.choose("cpu", "auto").precision == "fp32"
    monkeypatch.setattr(runtime, "cpu_flags", lambda: {"avx512f", "avx512_bf16"})
    assert Runtime.choose("cpu", "auto").precision == "bf16"


@pytest.mark.parametrize("forced", ["fp32", "bf16"])
def test_kata_precision_decides_what_auto_means(monkeypatch, forced):
    monkeypatch.setenv("KATA_PRECISION", forced)
    assert Runtime.choose("cpu", "auto").precision == forced
    assert Runtime.choose("cpu", "bf16").precision == "bf16"  # a config that names one keeps it


def test_an_unknown_kata_precision_is_named(monkeypatch):
    monkeypatch.setenv("KATA_PRECISION", "fp16")
    with pytest.raises(RuntimeError, match="KATA_PRECISION='fp16' is not a precision"):
        Runtime.choose("cpu", "auto")


@pytest.mark.parametrize("name", ["cuda", "mps"])
def test_a_missing_device_is_named(monkeypatch, name):
    _machine(monkeypatch, cuda=False, mps=False)
    with pytest.raises(RuntimeError, match=f"--device {name} was asked for"):
        pick_device(name)


@pytest.mark.parametrize("flag", ["evaluate", "benchmark"])
def test_evaluate_and_benchmark_refuse_torchrun(monkeypatch, flag):
    monkeypatch.setenv("WORLD_SIZE", "2")
    args = argparse.Namespace(evaluate=flag == "evaluate", benchmark=flag == "benchmark")
    with pytest.raises(DistributedError, match=f"--{flag} runs in one process"):
        join_processes(args, Runtime.choose("cpu"))
