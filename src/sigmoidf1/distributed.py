"""Collectives across processes: differentiable sums (batch-level losses) and row gathers (reports).

Summing soft counts over processes, with gradients, so that a batch-level loss sees the global
batch.

The sigmoidF1 family is not a mean of per-sample terms: ``2tp / (2tp + fp + fn)`` of a batch is not
the average of the values of its shards. Under data parallelism every rank therefore sums its
per-label counts with the other ranks' (``all_reduce_sum``) and computes the loss from the global
counts, so that every rank returns the same value: the loss of the concatenated global batch.

Gradient scaling (why no correction factor is needed with DDP)::

    R ranks, rank r holds local counts c_r(theta); C = sum_r c_r; every rank returns L(C).
    One process on the global batch would get       g* = sum_r dL/dC . dc_r/dtheta.
    Backward of all_reduce_sum on rank r returns    sum_r' dL_r'/dC = R * dL/dC   (L_r' = L)
    so rank r's parameter gradient is               R * dL/dC . dc_r/dtheta,
    and DDP averages over ranks:                    (1/R) sum_r R * dL/dC . dc_r/dtheta = g*.

i.e. the summing backward is the exact gradient of ``sum_r L_r = R * L`` and DDP's ``1/R``
cancels the ``R``. The returned value is not scaled. Other terms added to the loss that are local
means (e.g. BCE) keep their usual DDP semantics. Without DDP's averaging (e.g. a hand-written
``all_reduce`` of gradients that sums), divide by the world size yourself.

``all_reduce_sum`` is a collective: every rank must call the loss (and its backward) in lockstep,
with count tensors of the same shape, or the job hangs. ``torch.distributed.nn.functional`` has an
equivalent ``all_reduce`` (deprecated in recent torch); this file keeps the ten lines it needs.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import Tensor


def is_distributed() -> bool:
    """True when a default process group with more than one process is running."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def should_sync(sync_dist: bool | None) -> bool:
    """Resolve ``sync_dist``: ``None`` = auto (sync iff ``is_distributed()``), ``False`` = never,
    ``True`` = always (requires an initialised process group)."""
    if sync_dist is None:
        return is_distributed()
    if sync_dist and not (dist.is_available() and dist.is_initialized()):
        raise RuntimeError(
            "sync_dist=True needs an initialised torch.distributed process group; "
            "use sync_dist=None to sync only when one is running"
        )
    return bool(sync_dist)


class _AllReduceSum(torch.autograd.Function):
    """``all_reduce(SUM)`` whose backward is again an ``all_reduce(SUM)`` of the gradients."""

    @staticmethod
    def forward(ctx, tensor: Tensor) -> Tensor:
        tensor = tensor.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        grad = grad.clone(memory_format=torch.contiguous_format)
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad


def all_reduce_sum(tensor: Tensor) -> Tensor:
    """Sum ``tensor`` over all ranks of the default group, differentiably (see module docstring)."""
    return _AllReduceSum.apply(tensor)


def gather_rows(rows: Tensor, dataset_size: int | None = None) -> Tensor:
    """All processes' ``rows`` ``[n_rank, ...]`` joined, on every rank (no gradients).

    Ranks may hold different numbers of rows (torchmetrics' ``gather_all_tensors`` pads and trims);
    see ``join_ranks`` for the order. A collective: every rank must call it.
    """
    if not is_distributed():
        return rows
    from torchmetrics.utilities.distributed import gather_all_tensors  # only under DDP: slow import

    return join_ranks(gather_all_tensors(rows.contiguous()), dataset_size)


def join_ranks(parts: list[Tensor], dataset_size: int | None = None) -> Tensor:
    """Join one ``[n_r, ...]`` tensor per rank ``r`` into ``[sum n_r, ...]`` (or ``dataset_size``).

    Without ``dataset_size`` the parts are concatenated rank after rank. With it, the rows came
    from a non-shuffling distributed sampler that deals dataset positions ``r, r + W, r + 2W, ...``
    to rank ``r`` (Lightning's, padded by repeats at the end, or ``UnrepeatedDistributedSampler``):
    they are interleaved back into dataset order and cut to ``dataset_size``.
    """
    if dataset_size is None:
        return torch.cat(parts)
    counts = torch.tensor([part.shape[0] for part in parts])
    longest = int(counts.max())
    padded = torch.stack(
        [
            torch.cat([part, part.new_zeros((longest - len(part), *part.shape[1:]))])
            for part in parts
        ]
    )  # [W, longest, ...]
    valid = (torch.arange(longest)[None, :] < counts[:, None]).to(padded.device)  # [W, longest]
    interleaved = padded.transpose(0, 1)[valid.transpose(0, 1)]  # position i * W + r
    return interleaved[:dataset_size]
