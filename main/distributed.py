"""The run's device and its processes under torchrun: the process group, each rank's shard of an epoch, the
global-batch gather of the contrastive losses and DDP around the model.

`--batch_size` b is per process: N processes step through global batches of N·b rows of one epoch order, rank r
taking positions [r·b, (r+1)·b) of each, so they step as one process at batch N·b (dropout and negatives aside,
drawn per rank). Without WORLD_SIZE > 1 every function here is the identity (rank 0 of 1).
"""
import atexit
import contextlib
import functools
import os
import signal
import sys
import time

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def resolve_device(name):
    """torch.device of a --device value ('auto': the first GPU, else the CPU); ValueError for another kind."""
    if name == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError as err:
        raise ValueError(f"--device {name!r} is not a torch device (try cpu, cuda:0 or auto): {err}") from None
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"--device {name}: this project runs on the CPU or a CUDA GPU only; use --device cpu, "
                         f"cuda:0 or auto")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: no CUDA GPU is available here; use --device cpu or --device auto")
    if device.type == "cuda" and device.index is not None and device.index >= torch.cuda.device_count():
        raise ValueError(f"--device {name}: only {torch.cuda.device_count()} GPU(s) here; "
                         f"use --device cuda:0 or --device auto")
    return device


# seconds a process other than 0 waits before it exits on bad input, so that process 0 (maybe slower to start)
# prints the line before torchrun stops it; torchrun ends the wait as soon as process 0 exits
QUIET_EXIT_DELAY_S = 30.0


def wait_for_process_0():
    """Before a process other than 0 exits on bad input: give process 0 QUIET_EXIT_DELAY_S to print the line before
    torchrun stops the processes (its SIGTERM meanwhile ends this one with exit status 2 too)."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    time.sleep(QUIET_EXIT_DELAY_S)


class ProcessError(ValueError):
    """Bad input that this process alone may meet before the processes join (its own GPU): every process that
    raises it prints it."""


def requested_world_size():
    """WORLD_SIZE, the processes torchrun started (1 without), known before they join their group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device):
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) when WORLD_SIZE > 1; returns this process's
    device (cuda:LOCAL_RANK under torchrun). ValueError for incomplete torchrun variables or too few GPUs."""
    if requested_world_size() <= 1:
        return device
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start several "
                         f"processes with torchrun (see docs/scaling.md), or unset WORLD_SIZE")
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ProcessError(f"LOCAL_RANK {local_rank}: this node has {torch.cuda.device_count()} GPU(s); start "
                               f"at most that many processes per node (torchrun --nproc_per_node)")
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method="env://",
                                device_id=device if device.type == "cuda" else None)
        atexit.register(_leave)
    return device


def _leave():
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size():
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    """True on rank 0, which logs, evaluates and writes the files."""
    return rank() == 0


def process_rank():
    """This process's rank: its group's, else torchrun's RANK (an error before the group is joined), else 0."""
    if dist.is_initialized():
        return rank()
    return int(os.environ.get("RANK") or 0) if requested_world_size() > 1 else 0


@contextlib.contextmanager
def together(describe=str):
    """Run the block, which must call no collective, on every rank; under torchrun the ranks then tell each other
    whether it raised, and where it raised on any, it raises on all: the failing ranks their own error, the others
    a ValueError with the first failing rank's `describe(error)` — no rank is left waiting in a collective call
    or dying on a closed connection. One process: the block alone."""
    if world_size() == 1:
        yield
        return
    error = None
    try:
        yield
    except Exception as err:
        error = err
    messages = [None] * world_size()
    dist.all_gather_object(messages, None if error is None else describe(error))
    if error is not None:
        raise error
    failed = next(((index, message) for index, message in enumerate(messages) if message is not None), None)
    if failed is not None:
        raise ValueError(f"torchrun process {failed[0]} stopped: {failed[1]}")


def main_only(method):
    """Decorator: `method` runs on rank 0 only (no collective calls inside); other ranks get None."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return method(*args, **kwargs) if is_main() else None
    return wrapper


def rank_seed(seed):
    """Seed of this rank's dropout and negatives: `seed` on rank 0, SeedSequence([seed, rank]) on the others."""
    if rank() == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0])


def shard(indices, batch_size):
    """This rank's rows of `indices` (1-D, the same on every rank): positions [r·b, (r+1)·b) of each global batch;
    of a last, shorter one t // world_size() rows each. Every rank gets as many rows."""
    world = world_size()
    if world == 1:
        return indices
    full = len(indices) // (world * batch_size)
    head = indices[:full * world * batch_size].view(full, world, batch_size)[:, rank()].reshape(-1)
    tail = indices[full * world * batch_size:]
    part = len(tail) // world
    return torch.cat([head, tail[rank() * part:(rank() + 1) * part]])


class _Gather(torch.autograd.Function):
    """All ranks' tensors concatenated along `dim`; backward: the local slice's gradient × N."""

    @staticmethod
    def forward(ctx, tensor, dim):
        ctx.dim = dim
        parts = [torch.empty_like(tensor) for _ in range(world_size())]
        dist.all_gather(parts, tensor.contiguous())
        parts[rank()] = tensor
        return torch.cat(parts, dim=dim)

    @staticmethod
    def backward(ctx, grad):
        size = grad.shape[ctx.dim] // world_size()
        return grad.narrow(ctx.dim, rank() * size, size) * world_size(), None


def gather(tensor, dim=0):
    """The global batch of a per-rank tensor (every rank's, concatenated along `dim`), for a loss every rank
    computes alike: the local slice's gradient is multiplied by world_size(), which DDP's mean divides out."""
    if world_size() == 1:
        return tensor
    return _Gather.apply(tensor, dim)


def mean_over_ranks(value):
    if world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world_size()


class _LossOf(nn.Module):
    """`forward(loss_fn, *args)` = loss_fn(model, *args), so that DDP sees the heads the losses use."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, *args):
        return loss_fn(self.model, *args)


def parallel(model):
    """`step(loss_fn, *args)` = loss_fn(model, *args); with several processes inside DDP (rank 0's weights,
    gradients averaged over the ranks)."""
    step = _LossOf(model)
    if world_size() == 1:
        return step
    device = next(model.parameters()).device
    return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True, forward_sync_buffers=False)
