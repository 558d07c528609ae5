"""Data-parallel training on torch.distributed: every rank rolls out its own episodes, gradients are averaged.

Launch with ``torchrun --nproc-per-node N script.py`` (gloo on CPUs, nccl on GPUs) and call
:func:`init` first. The agents call the helpers below, which do nothing in a single process:
parameters are broadcast from rank 0 when learning starts, every gradient is averaged across ranks
before each optimizer step, and PPO's early-stop statistic is averaged so all ranks take the same
number of steps. The weights therefore stay identical on every rank.
"""

from __future__ import annotations

import os

import torch
import torch.distributed as dist
from torch import nn


def init(backend: str | None = None) -> tuple[int, int]:
    """Join the process group torchrun set up (no-op without it); returns ``(rank, world_size)``."""
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        dist.init_process_group(backend or ("nccl" if torch.cuda.is_available() else "gloo"))
    return rank(), world_size()


def active() -> bool:
    """Whether more than one process trains together."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 alone)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Number of processes (1 alone)."""
    return dist.get_world_size() if active() else 1


def broadcast_parameters(module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if active():
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def average_gradients(parameters: list[nn.Parameter]) -> None:
    """Replace each gradient by its mean over the ranks."""
    if active():
        for p in parameters:
            if p.grad is not None:
                dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
                p.grad /= dist.get_world_size()


def mean(value: float) -> float:
    """The mean of a scalar over the ranks."""
    if not active():
        return value
    tensor = torch.tensor([value], dtype=torch.float64)
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return float(tensor) / dist.get_world_size()
