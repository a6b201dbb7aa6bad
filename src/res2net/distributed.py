"""torch.distributed set-up under torchrun, mpirun, or nothing.

torchrun exports ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; MPI launchers export their own
variables (OpenMPI ``OMPI_COMM_WORLD_*``, MPICH/Hydra and Intel MPI ``PMI_*``), which
is how the seed's ``mpirun -n 8 python train.py`` works unchanged. We only translate
those into torch's ``env://`` rendezvous; no launcher or protocol of our own.
"""

from __future__ import annotations

import datetime
import os
import sys
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import ConfigError

DEFAULT_MASTER_ADDR = "127.0.0.1"
DEFAULT_MASTER_PORT = "29500"

# (rank, world size, local rank) variable names, in the order launchers are tried.
_LAUNCHER_VARIABLES = (
    ("torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"),
    ("OpenMPI", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"),
    ("Intel MPI", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID"),
    ("MPICH", "PMI_RANK", "PMI_SIZE", "PMI_LOCAL_RANK"),
)


@dataclass(frozen=True)
class DistContext:
    """Where this process stands in the job; a single process is rank 0 of 1."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    launcher: str = "none"

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 or dist.is_initialized()


def detect_launcher(env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, int, int, int] | None:
    """``(launcher, rank, world_size, local_rank)`` from the environment, or None."""
    for launcher, rank_var, size_var, local_var in _LAUNCHER_VARIABLES:
        if rank_var in env and size_var in env:
            rank, size = int(env[rank_var]), int(env[size_var])
            # Without a local-rank variable assume one process per node (multi-node MPICH).
            local = int(env.get(local_var, "0"))
            return launcher, rank, size, local
    return None


def resolve_device(requested: str, local_rank: int) -> torch.device:
    """``auto`` = this rank's GPU when CUDA is available, else the CPU."""
    if requested == "auto":
        requested = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(requested)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device '{requested}' requested but CUDA is not available")
        if device.index is None:
            device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    return device


def init_distributed(distribute: bool, device: str = "auto") -> DistContext:
    """Join the process group when asked to and launched by torchrun or mpirun.

    ``distribute: True`` without a launcher (a plain ``python train.py``) runs as a
    single process and says so, rather than waiting forever for peers.
    """
    found = detect_launcher()
    if not distribute or found is None or found[2] == 1:
        if distribute:
            print("note: distribute is True but no torchrun/mpirun launcher was found; "
                  "training in a single process", file=sys.stderr)
        return DistContext(device=resolve_device(device, 0))
    launcher, rank, world_size, local_rank = found
    os.environ.setdefault("MASTER_ADDR", DEFAULT_MASTER_ADDR)
    os.environ.setdefault("MASTER_PORT", DEFAULT_MASTER_PORT)
    torch_device = resolve_device(device, local_rank)
    backend = "nccl" if torch_device.type == "cuda" else "gloo"
    if not dist.is_initialized():
        timeout = datetime.timedelta(minutes=30)
        store, _, _ = next(dist.rendezvous("env://", rank, world_size, timeout=timeout))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT")
        if attempt is not None:
            # torchrun keeps one store for all restarts of a group; without a fresh namespace a
            # restarted rank can read a dead rank's Gloo/NCCL address from the previous attempt
            # and fail to connect (or wait forever) instead of resuming.
            store = dist.PrefixStore(f"res2net/attempt_{attempt}", store)
        dist.init_process_group(
            backend=backend,
            store=store,
            rank=rank,
            world_size=world_size,
            timeout=timeout,
            device_id=torch_device if torch_device.type == "cuda" else None,
        )
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=torch_device,
                       launcher=launcher)


def all_reduce_sum(values: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """Sum a tensor over ranks (no-op for one process)."""
    if ctx.distributed:
        values = values.clone()
        dist.all_reduce(values, op=dist.ReduceOp.SUM)
    return values


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def shutdown(ctx: DistContext) -> None:
    if ctx.distributed and dist.is_initialized():
        dist.destroy_process_group()
