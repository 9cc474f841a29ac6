"""Training on several processes, as `torchrun --nproc_per_node N main.py ...` starts them.

Every process draws the same global batch (and the same timesteps and noise), keeps its own contiguous
shard of it, and DistributedDataParallel averages the gradients: the update is the single-process one, so
the global batch, the images seen and the level verdict do not depend on N. Only the main process (rank 0)
writes checkpoints, figures and metrics. One process (plain `python main.py`) makes every method a no-op.
"""

import os

import torch
import torch.distributed as dist


class DistributedError(Exception):
    """A distributed run was asked for in a way it cannot work; the message says what to do."""


class Processes:
    """This process's place among the `world_size` processes of a run (rank 0 is the main one)."""

    def __init__(self, rank: int = 0, world_size: int = 1):
        self.rank, self.world_size = rank, world_size

    @classmethod
    def from_environment(cls, device: torch.device) -> "Processes":
        """The processes torchrun started (WORLD_SIZE, RANK), joined into a group; one process without torchrun."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size == 1:
            return cls()
        if not dist.is_initialized():
            dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size)

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def check_batch(self, batch_size: int) -> None:
        if batch_size % self.world_size:
            raise DistributedError(f"data.batch_size={batch_size} does not split evenly over {self.world_size} "
                                   f"processes: use a multiple of {self.world_size}, or another --nproc_per_node")

    def shard(self, x: torch.Tensor | None) -> torch.Tensor | None:
        """This process's contiguous part of a global batch x: (B, ...) -> (B / world_size, ...); None stays None."""
        if x is None:
            return None
        size = len(x) // self.world_size
        return x[self.rank * size:(self.rank + 1) * size]

    def mean(self, value: torch.Tensor) -> torch.Tensor:
        """The mean of `value` over the processes (every process gets it)."""
        if self.world_size == 1:
            return value
        total = value.detach().clone()
        dist.all_reduce(total)
        return total / self.world_size

    def any(self, flag: bool, device: torch.device) -> bool:
        """True on every process when `flag` is true on one of them (a Ctrl-C seen by one process stops all)."""
        if self.world_size == 1:
            return flag
        return self.mean(torch.tensor(float(flag), device=device)).item() > 0

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model that forward and backward go through: DistributedDataParallel over several processes."""
        if self.world_size == 1:
            return model
        from torch.nn.parallel import DistributedDataParallel

        return DistributedDataParallel(model)

    def close(self) -> None:
        if self.world_size > 1 and dist.is_initialized():
            dist.barrier()  # torn down together: a process that leaves while the other still talks can abort
            dist.destroy_process_group()
