"""torchrun: two processes, each on half of every global batch, train like one process on the whole batch."""

import json
import os
import subprocess
import sys

import pytest
import torch

from src.harness.run.distributed import DistributedError, Processes
from src.harness.run.train import load_checkpoint
from tests.harness.helpers import ONE_CONV, kata_copy, run_main

# Float32 sums in another order (half-batch gradients averaged over processes, not one batch) stay within this.
LOSS_TOLERANCE = 1e-3
# A student's one-convolution model: it starts in seconds, where the reference imports diffusers in each process.
SHORT_RUN = ["--config", "configs/smoke.yaml", "training.precision=fp32", "training.max_steps=24",
             "training.log_every=4", "training.eval_every=8", "training.preview_every=0", "output.animation=false"]


def _torchrun(cwd, processes: int, *args: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
               "main.py", *args]
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, "KATA_PROGRESS": "0", "OMP_NUM_THREADS": "1"})


@pytest.mark.slow
def test_two_processes_follow_the_loss_curve_of_one(tmp_path):
    kata = kata_copy(tmp_path, model=ONE_CONV)
    one = run_main(kata, *SHORT_RUN, f"output.root={tmp_path / 'one'}")
    assert one.returncode == 0, one.stderr
    two = _torchrun(kata, 2, *SHORT_RUN, f"output.root={tmp_path / 'two'}")
    assert two.returncode == 0, two.stderr[-3000:]
    assert two.stdout.count("Training your model") == 1, "only the main process reports and writes"

    single, double = (json.loads((tmp_path / n / "smoke" / "history.json").read_text()) for n in ("one", "two"))
    assert [step for step, _ in double["train"]] == [step for step, _ in single["train"]]
    for (step, expected), (_, loss) in zip(single["train"], double["train"]):
        assert loss == pytest.approx(expected, rel=LOSS_TOLERANCE), f"training loss at step {step}"
    for expected, val in zip(single["val"], double["val"]):
        assert val["loss"] == pytest.approx(expected["loss"], rel=LOSS_TOLERANCE), f"validation at {val['step']}"
    a, b = (load_checkpoint(tmp_path / n / "smoke" / "checkpoint.pt") for n in ("one", "two"))
    assert (a["step"], a["images_seen"], a["budget"]) == (b["step"], b["images_seen"], b["budget"])


def test_a_batch_that_does_not_split_over_the_processes_is_named():
    with pytest.raises(DistributedError, match="data.batch_size=63 does not split evenly over 2 processes"):
        Processes(rank=0, world_size=2).check_batch(63)


def test_each_process_keeps_its_own_contiguous_shard():
    batch = torch.arange(8)
    shards = [Processes(rank, 2).shard(batch) for rank in range(2)]
    assert shards[0].tolist() == [0, 1, 2, 3] and shards[1].tolist() == [4, 5, 6, 7]
    assert Processes().shard(batch).tolist() == batch.tolist(), "one process keeps the whole batch"
