"""Evaluation under data parallelism: every example exactly once, ranks in step.

Lightning's default ``DistributedSampler`` pads each rank's share to the same length by repeating
examples, so with N examples on W ranks, ``W * ceil(N / W) - N`` examples are counted twice and the
validation/test metrics differ from a single-process evaluation. The sampler here pads nothing:
rank ``r`` takes examples ``r, r + W, r + 2W, ...`` in the dataset's order.

With a per-rank batch size ``b = B / W``, batch ``j`` of every rank then comes from the same
global batch ``j`` (examples ``jB .. jB + B - 1``): the union over ranks of the ``j``-th batches is
exactly the ``j``-th batch of a single process with batch size ``B``. Metrics (torchmetrics states)
are batch-independent anyway; batch-level losses such as sigmoidF1 with ``sync_dist`` (which sums
the counts over ranks) thus get the single-process value too.

Ranks must run the same number of steps, because a synced loss is a collective per step. That
holds unless the last global batch holds fewer than W examples (``0 < N mod B < W``): then some
ranks would get no last batch, and ``check_even_batches`` raises instead of letting the job hang.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sized

from torch.utils.data import DistributedSampler

from sigmoidf1.utils.errors import ConfigError


class UnrepeatedDistributedSampler(DistributedSampler):
    """Rank ``r`` of ``num_replicas`` yields ``r, r + num_replicas, ...`` (no shuffle, no padding).

    A ``DistributedSampler`` subclass, so that Lightning keeps it rather than injecting its own.
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)
        self.num_samples = len(range(rank, len(dataset), num_replicas))
        self.total_size = len(dataset)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))


def check_even_batches(num_examples: int, batch_size: int, world_size: int, split: str) -> None:
    """Raise ``ValueError`` unless every rank gets ``ceil(n_r / batch_size)`` equal batches.

    ``batch_size`` is per rank; ``n_r`` is rank ``r``'s share under
    ``UnrepeatedDistributedSampler``.
    """
    counts = {
        math.ceil(len(range(r, num_examples, world_size)) / batch_size) for r in range(world_size)
    }
    if len(counts) == 1:
        return
    global_batch = batch_size * world_size
    remainder = num_examples % global_batch
    candidates = [
        b
        for b in range(world_size, 4 * global_batch + 1, world_size)
        if num_examples % b == 0 or num_examples % b >= world_size
    ]
    nearest = sorted(candidates, key=lambda b: (abs(b - global_batch), b))[:3]
    raise ConfigError(
        f"the {split} split has {num_examples} examples: with a global evaluation batch size of "
        f"{global_batch} on {world_size} processes its last batch holds {remainder} example(s), "
        f"fewer than the processes, so the processes would run different numbers of steps (and "
        f"a loss synced across them would wait forever). Choose data.eval_batch_size such that "
        f"{num_examples} mod it is 0 or >= {world_size}, e.g. {', '.join(map(str, nearest))}"
    )
