"""The run's device and its torchrun processes: process group, per-rank shards, the global-batch gather
of the contrastive losses, DDP.

`--batch_size` is per process: rank r takes positions [r·b, (r+1)·b) of each global batch of N·b rows. Without
WORLD_SIZE > 1 every function is the identity (rank 0 of 1).
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
    """Give process 0 QUIET_EXIT_DELAY_S to print its error before this one exits on bad input."""
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(2))
    time.sleep(QUIET_EXIT_DELAY_S)


class ProcessError(ValueError):
    """Bad input this process alone may meet before the processes join; every process prints it."""


def requested_world_size():
    """WORLD_SIZE (1 without torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device):
    """Join torchrun's process group (nccl on CUDA, gloo on the CPU) when WORLD_SIZE > 1; returns the device.
    ValueError for incomplete torchrun variables or too few GPUs."""
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
    """This process's rank (torchrun's RANK before the group is joined; 0 without)."""
    if dist.is_initialized():
        return rank()
    return int(os.environ.get("RANK") or 0) if requested_world_size() > 1 else 0


@contextlib.contextmanager
def together(describe=str):
    """Run the block (no collectives inside) on every rank; if it raised on any rank it raises on all (the
    others a ValueError with `describe(error)`), so no rank hangs in a collective."""
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
    """This rank's rows of `indices` (1-D, the same on every rank): positions [r·b, (r+1)·b) of each global
    batch; every rank gets as many rows."""
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
    """Every rank's tensor concatenated along `dim`; the local gradient is scaled by world_size(), which DDP's
    mean divides out."""
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
    """`forward(loss_fn, *args)` = loss_fn(model, *args), so DDP sees the heads the losses use."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, *args):
        return loss_fn(self.model, *args)


def parallel(model):
    """`step(loss_fn, *args)` = loss_fn(model, *args), inside DDP with several processes."""
    step = _LossOf(model)
    if world_size() == 1:
        return step
    device = next(model.parameters()).device
    return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True, forward_sync_buffers=False)
