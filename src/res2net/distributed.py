"""torch.distributed set-up under torchrun, mpirun, SLURM's srun, or nothing.

torchrun exports ``RANK``/``WORLD_SIZE``/``LOCAL_RANK``; MPI launchers export their own
variables (OpenMPI ``OMPI_COMM_WORLD_*``, MPICH/Hydra and Intel MPI ``PMI_*``), which
is how the seed's ``mpirun -n 8 python train.py`` works unchanged; ``srun`` (one task per
GPU) exports ``SLURM_PROCID``/``SLURM_NTASKS``/``SLURM_LOCALID``, and the rendezvous host is
the first node of ``SLURM_JOB_NODELIST`` with a port derived from the job id. We only
translate those into torch's ``env://`` rendezvous; no launcher or protocol of our own.
The order matters: torchrun or mpirun started inside a SLURM allocation inherit the
allocation's SLURM variables, so their own variables are looked at first.
"""

from __future__ import annotations

import datetime
import os
import re
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
    ("SLURM", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"),
)
#: SLURM jobs without MASTER_PORT rendezvous on this port plus the job id modulo the span, so
#: two jobs sharing a first node do not collide.
SLURM_PORT_BASE = 15000
SLURM_PORT_SPAN = 20000


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


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM's compressed host list (``node[01-04,07],gpu3``) as host names, in order."""
    hosts: list[str] = []
    for item in re.findall(r"[^,\[]+(?:\[[^\]]*\][^,\[]*)*", nodelist):
        hosts.extend(_expand_host(item))
    if not hosts:
        raise ConfigError(f"SLURM_JOB_NODELIST {nodelist!r} names no host")
    return hosts


def _expand_host(pattern: str) -> list[str]:
    match = re.match(r"^([^\[]*)\[([^\]]*)\](.*)$", pattern)
    if match is None:
        return [pattern]
    prefix, ranges, rest = match.groups()
    names: list[str] = []
    for part in ranges.split(","):
        low, _, high = part.partition("-")
        if not low.isdigit() or (high and not high.isdigit()):
            raise ConfigError(f"cannot read the host range [{ranges}] in SLURM_JOB_NODELIST")
        width = len(low)  # node[01-04] keeps its zero padding
        names += [f"{prefix}{i:0{width}d}" for i in range(int(low), int(high or low) + 1)]
    return [f"{name}{tail}" for name in names for tail in _expand_host(rest)]


def slurm_rendezvous(env: dict[str, str] | os._Environ[str]) -> tuple[str, str]:
    """(MASTER_ADDR, MASTER_PORT) for an srun job: the first node of the job, a port from the job id."""
    nodelist = env.get("SLURM_STEP_NODELIST") or env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
    host = expand_nodelist(nodelist)[0] if nodelist else DEFAULT_MASTER_ADDR
    job = env.get("SLURM_JOB_ID") or env.get("SLURM_JOBID") or "0"
    port = SLURM_PORT_BASE + int(job) % SLURM_PORT_SPAN if job.isdigit() else int(DEFAULT_MASTER_PORT)
    return env.get("MASTER_ADDR", host), env.get("MASTER_PORT", str(port))


def detect_launcher(env: dict[str, str] | os._Environ[str] = os.environ) -> tuple[str, int, int, int] | None:
    """``(launcher, rank, world_size, local_rank)`` from the environment, or None."""
    for launcher, rank_var, size_var, local_var in _LAUNCHER_VARIABLES:
        if launcher == "SLURM" and "SLURM_STEP_NUM_TASKS" in env:
            size_var = "SLURM_STEP_NUM_TASKS"  # this srun step's tasks (a job may run several steps)
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
    """Join the process group when asked to and launched by torchrun, mpirun or srun.

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
    if launcher == "SLURM":
        os.environ["MASTER_ADDR"], os.environ["MASTER_PORT"] = slurm_rendezvous(os.environ)
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
