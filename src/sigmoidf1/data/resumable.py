"""A training loader whose order depends only on ``(seed, epoch)`` and that resumes mid-epoch.

``EpochShuffleSampler`` draws epoch ``e``'s permutation from its own generator seeded with
``(seed, e)`` (Lightning calls ``set_epoch`` before every epoch), so the data order never depends on
the global random state, which the model's dropout consumes. ``ResumableDataLoader`` starts each
iteration after the batches of the epoch already trained on: under Lightning that number is the
fit loop's own count (``position``), which it restores from the checkpoint and uses to decide where
the epoch ends, so the two cannot disagree even for a checkpoint written in the middle of a step.
Skipping happens at the index level: no skipped example is loaded. The loader is also *stateful* in
Lightning's sense (``state_dict``/``load_state_dict``: the seed, the epoch and its own count), which
tells Lightning that mid-epoch resumption is supported. Together with the restored random states
(``RestoreRandomState``) a run resumed from a checkpoint continues exactly as if it had not stopped.

Under a distributed strategy the sampler is ``EpochShuffleDistributedSampler``: the same permutation
on every process, rank ``r`` of ``W`` taking positions ``r, r + W, ...`` (padded like torch's
``DistributedSampler``, of which it is a subclass so that Lightning keeps it rather than injecting
its own). Global batch ``j`` (the ranks' ``j``-th batches together) is then the ``j``-th batch of
one process with the same seed, and a mid-epoch resume skips the batches done on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sized
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Sampler

from sigmoidf1.utils.errors import ConfigError

_MIX = (
    0x9E3779B97F4A7C15  # 64-bit golden-ratio constant: spreads (seed, epoch) over generator seeds
)


def epoch_seed(seed: int, epoch: int) -> int:
    """A generator seed for ``(seed, epoch)``; distinct pairs give unrelated streams."""
    return (int(seed) * _MIX + int(epoch) + 1) % (2**63)


class EpochShuffleSampler(Sampler[int]):
    """Random permutation of ``range(num_examples)`` determined by ``(seed, epoch)``.

    ``start`` skips the first ``start`` indices of the next iteration only (mid-epoch resume);
    ``len()`` stays the full epoch so that Lightning counts batches per epoch as usual.
    """

    def __init__(self, num_examples: int, seed: int) -> None:
        self.num_examples = num_examples
        self.seed = int(seed)
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(self.num_examples, generator=generator)[self.start :]
        self.start = 0
        yield from order.tolist()

    def __len__(self) -> int:
        return self.num_examples


class EpochShuffleDistributedSampler(DistributedSampler):
    """Rank ``rank``'s share of ``EpochShuffleSampler``'s permutation for ``(seed, epoch)``:
    positions ``rank, rank + num_replicas, ...`` of it, padded at the end with its first indices to
    a multiple of ``num_replicas`` (as torch's ``DistributedSampler``: every rank runs the same
    number of steps). ``start`` skips that many of this rank's next indices (mid-epoch resume).
    """

    def __init__(self, dataset: Sized, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self.start = 0

    def __iter__(self) -> Iterator[int]:
        generator = torch.Generator().manual_seed(epoch_seed(self.seed, self.epoch))
        order = torch.randperm(len(self.dataset), generator=generator).tolist()
        padding = self.total_size - len(order)
        order += (order * math.ceil(padding / len(order)))[:padding] if padding > 0 else []
        share = order[self.rank : self.total_size : self.num_replicas][self.start :]
        self.start = 0
        yield from share


class ResumableDataLoader(DataLoader):
    """A ``DataLoader`` over an ``EpochShuffleSampler`` that can start in the middle of an epoch.

    Args:
        seed: seeds the order of every epoch; ``None`` draws one (replaced by a checkpoint's).
        position: returns how many batches of the current epoch are already done, read when an
            iteration starts (the DataModule passes Lightning's count). Without it, the count
            restored by ``load_state_dict`` applies to the next iteration of the same epoch.

    ``state_dict() = {"seed", "epoch", "batches"}`` (plain ints: safe to load with
    ``weights_only=True``), ``batches`` being the number yielded in the current epoch. The loader
    seeds its own ``generator`` (the worker base seed) from ``(seed, epoch)`` as well, so iterating
    it never consumes the global random state.
    """

    def __init__(
        self,
        dataset: Any,
        batch_size: int,
        seed: int | None,
        position: Callable[[], int] | None = None,
        **kwargs: Any,
    ) -> None:
        # seed=None (an unseeded run): a random seed, replaced by the checkpoint's on resume
        self._seed_given = seed is not None
        seed = int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item())
        sampler = kwargs.pop("sampler", None) or EpochShuffleSampler(len(dataset), seed)
        kwargs.setdefault("generator", torch.Generator())
        super().__init__(dataset, batch_size=batch_size, sampler=sampler, **kwargs)
        self.seed = seed
        self.position = position
        self._batches = 0
        self._resume: dict[str, int] | None = None

    def __iter__(self) -> Iterator[Any]:  # type: ignore[override]
        # a generator: this body runs at the first next(), after Lightning has set the epoch
        # and restored its progress counters
        sampler = self.sampler
        epoch = getattr(sampler, "epoch", 0)
        skip = 0
        if self.position is not None:
            skip = int(self.position())
        elif self._resume is not None and self._resume["epoch"] == epoch:
            skip = self._resume["batches"]
        self._resume = None
        if isinstance(sampler, (EpochShuffleSampler, EpochShuffleDistributedSampler)):
            sampler.start = (
                skip * self.batch_size
            )  # Lightning may have swapped it (overfit_batches)
        else:
            skip = 0
        if self.generator is not None:
            self.generator.manual_seed(epoch_seed(self.seed, epoch) ^ 0x5DEECE66D)
        self._batches = skip
        for batch in super().__iter__():
            self._batches += 1
            yield batch

    def state_dict(self) -> dict[str, int]:
        return {
            "seed": self.seed,
            "epoch": int(getattr(self.sampler, "epoch", 0)),
            "batches": self._batches,
        }

    def load_state_dict(self, state: dict[str, int]) -> None:
        stored_seed = int(state.get("seed", self.seed))
        if not self._seed_given:
            self.seed = stored_seed
            if isinstance(self.sampler, (EpochShuffleSampler, EpochShuffleDistributedSampler)):
                self.sampler.seed = stored_seed
        elif stored_seed != self.seed:
            raise ConfigError(
                f"the checkpoint's data order was seeded with {state['seed']} but this run uses "
                f"{self.seed}: resume with the same seed (the `seed` key) to continue the same "
                "order"
            )
        batches = int(state.get("batches", 0))
        self._resume = (
            {"epoch": int(state.get("epoch", 0)), "batches": batches}
            if 0 < batches < len(self)
            else None
        )
