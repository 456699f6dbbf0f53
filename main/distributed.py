"""Several processes under `torchrun`: the process group, each rank's shard of an epoch, the global-batch gather of the
pre-training losses and DistributedDataParallel (DDP) around the model.

    torchrun --standalone --nproc_per_node 2 train_unsuper.py <flags>               # one node, two processes
    torchrun --nnodes 2 --node_rank R --nproc_per_node 4 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 train_unsuper.py <flags>                      # two nodes (R = 0 and 1)

torchrun gives each process RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT in its environment; `setup`
joins the process group from them (nccl for CUDA devices, gloo on the CPU). Without WORLD_SIZE > 1 (a plain `python
train_unsuper.py`) nothing here communicates: rank 0 of 1, the model called directly, every function an identity,
so a single process computes exactly what it did before this module existed.

The global batch (open_clip's scheme for contrastive losses). `--batch_size` b is per process; N processes take
global batches of N·b rows from one epoch order that every rank draws alike from (seed, phase, epoch); rank r takes
positions [r·b, (r+1)·b) of each (`shard`). The pre-training losses `gather` the embeddings of all ranks, so that
their in-batch terms contrast each location with the N·b images (and N·b locations) of the global batch, and compute
the loss of the global batch on every rank. Gradients flow into the local slice only; as every rank computes the
same loss, the ranks' slices together carry its whole gradient, and `gather` multiplies the local slice's gradient
by N to cancel the mean that DDP takes over ranks. Losses that are means over samples (l2regress, fine-tuning) are
not gathered: DDP's mean of the ranks' equal-sized means is the global mean. Either way N processes at batch b step
as one process at batch N·b (random negative locations and dropout masks aside, which each rank draws from its own
seed, `rank_seed`).
"""
import atexit
import functools
import os

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel


def resolve_device(name):
    """torch.device for a --device value; 'auto' picks the first GPU when there is one, else the CPU. ValueError
    for a name that is not a CPU or an available CUDA device."""
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


def requested_world_size():
    """The number of processes torchrun started (WORLD_SIZE; 1 without torchrun), before they join their group."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def setup(device):
    """Join torchrun's process group (once per process) when WORLD_SIZE > 1; returns this process's device:
    cuda:LOCAL_RANK for a CUDA `device` under torchrun, else `device` (a torch.device).

    Raises ValueError when torchrun's variables are incomplete or a node has fewer GPUs than processes."""
    if requested_world_size() <= 1:
        return device
    missing = [name for name in ("RANK", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT") if name not in os.environ]
    if missing:
        raise ValueError(f"WORLD_SIZE={os.environ['WORLD_SIZE']} but {', '.join(missing)} not set: start several "
                         f"processes with torchrun (see README, 'Scaling out'), or unset WORLD_SIZE")
    if device.type == "cuda":
        local_rank = int(os.environ["LOCAL_RANK"])
        if local_rank >= torch.cuda.device_count():
            raise ValueError(f"LOCAL_RANK {local_rank}: this node has {torch.cuda.device_count()} GPU(s); start at "
                             f"most that many processes per node (torchrun --nproc_per_node)")
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
    """Number of processes (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def rank():
    """This process's rank in [0, world_size())."""
    return dist.get_rank() if dist.is_initialized() else 0


def is_main():
    """True on rank 0, the process that writes checkpoints, logs and results and runs the evaluations."""
    return rank() == 0


def main_only(method):
    """Decorator: run `method` on rank 0 only; other ranks get None. For what writes files or evaluates (no
    collective calls inside)."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        return method(*args, **kwargs) if is_main() else None
    return wrapper


def rank_seed(seed):
    """Seed of this rank's own random draws (dropout masks, random negative locations) from the shared `seed`
    (int): `seed` itself on rank 0, so that a single process draws as before; one derived from (seed, rank) by
    numpy's SeedSequence on the others."""
    if rank() == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank()]).generate_state(1)[0])


def shard(indices, batch_size):
    """This rank's rows of an epoch: `indices` (1-D tensor, the same order on every rank) taken as global batches
    of world_size()·batch_size, of which rank r gets positions [r·b, (r+1)·b); a last, shorter global batch of t
    rows gives every rank t // world_size() rows (the t mod world_size() rows left over are not trained on this
    epoch). Shards are equally long, so every rank runs the same number of steps. One process: `indices`."""
    world = world_size()
    if world == 1:
        return indices
    full = len(indices) // (world * batch_size)
    head = indices[:full * world * batch_size].view(full, world, batch_size)[:, rank()].reshape(-1)
    tail = indices[full * world * batch_size:]
    part = len(tail) // world
    return torch.cat([head, tail[rank() * part:(rank() + 1) * part]])


class _Gather(torch.autograd.Function):
    """All ranks' `tensor`s concatenated along `dim` in rank order; backward: the local slice's gradient × N."""

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
    """The global batch of a per-rank tensor: every rank's `tensor` (equal shapes) concatenated along `dim` in rank
    order, so with `shard`'s layout row i of the result is row i of the global batch. For a loss that every rank
    computes alike from gathered tensors: the gradient reaching the local slice is multiplied by world_size(), which
    DDP's mean over ranks divides out again (the sum over ranks of the slices' gradients is the loss's gradient).
    One process: `tensor` itself."""
    if world_size() == 1:
        return tensor
    return _Gather.apply(tensor, dim)


def mean_over_ranks(value):
    """A tensor's mean over the ranks (e.g. a logged loss); one process: `value` itself."""
    if world_size() == 1:
        return value
    value = value.clone()
    dist.all_reduce(value)
    return value / world_size()


class _LossOf(nn.Module):
    """`forward(loss_fn, *args)` = loss_fn(model, *args): the losses use the model's heads (img_dec, class_emb,
    user_emb) besides its forward, and DDP synchronises the gradients of what its wrapped module's forward uses."""

    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, loss_fn, *args):
        return loss_fn(self.model, *args)


def parallel(model):
    """A module called as `step(loss_fn, *args)` that returns loss_fn(model, *args): the model itself in one process;
    with several, inside DDP (which first gives every rank rank 0's weights, then averages the gradients over ranks
    in backward; parameters a phase does not use keep no gradient, as in one process)."""
    step = _LossOf(model)
    if world_size() == 1:
        return step
    device = next(model.parameters()).device
    return DistributedDataParallel(step, device_ids=[device] if device.type == "cuda" else None,
                                   find_unused_parameters=True, forward_sync_buffers=False)
