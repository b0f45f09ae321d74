"""Shared base class of the DataModules.

A DataModule here yields batches ``(inputs, targets)``: ``inputs`` is whatever its backbones take (a
float tensor, or a dict of tensors), ``targets`` a float tensor ``[batch, num_labels]`` in {0, 1}.
After ``setup()`` it exposes:

- ``label_names`` (list of str) and ``num_labels``: the model's head is sized from them;
- ``backbone_inputs``: a dict of the input facts a backbone may need (``in_features``, ``vocab_size``,
  ``in_channels`` ...); each backbone takes the keys it declares in its signature.

``batch_size`` is the **global** batch size: under a distributed strategy each process loads
``batch_size // world_size`` examples, so a config means the same optimisation whatever the number
of devices. Validation and test batches come from ``UnrepeatedDistributedSampler`` there: every
example is evaluated exactly once, so the metrics equal those of one process (``distributed.py``).

For prediction on new data, ``state_dict()`` holds everything needed to preprocess new inputs without
the training data (label names, scaler statistics, vocabulary, tokenizer, image size and
normalisation) as plain Python data, so that checkpoints load with ``torch.load(weights_only=True)``;
``load_state_dict(state)`` restores it on a freshly constructed DataModule, and
``predict_dataset(path)`` reads a user file of inputs into a dataset that yields ``inputs`` in the
training format (no targets).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from sigmoidf1.data.distributed import UnrepeatedDistributedSampler, check_even_batches


class MultilabelDataModule(L.LightningDataModule):
    """Base class: holds the three splits and builds their loaders.

    Subclasses implement ``_load()``, which sets ``self.train_set``, ``self.val_set``,
    ``self.test_set``, ``self.label_names`` and ``self.backbone_inputs``. ``setup`` calls it once.
    """

    def __init__(
        self,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        pin_memory: bool = False,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.drop_last = drop_last
        self.train_set: Dataset | None = None
        self.val_set: Dataset | None = None
        self.test_set: Dataset | None = None
        self.label_names: list[str] = []
        self.backbone_inputs: dict[str, Any] = {}

    @property
    def num_labels(self) -> int:
        if not self.label_names:
            raise RuntimeError(f"{type(self).__name__}.setup() must run before num_labels is read")
        return len(self.label_names)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            self._load()
            for name in ("train_set", "val_set", "test_set"):
                split = getattr(self, name)
                if split is None or len(split) == 0:
                    raise ValueError(f"{type(self).__name__}: the {name[:-4]} split is empty")

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    # --- prediction -----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Preprocessing state saved in checkpoints (plain Python data). Subclasses extend it."""
        return {"label_names": list(self.label_names)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``'s output; Lightning also calls it when testing a checkpoint.

        Raises ``ValueError`` when this DataModule was already set up with different labels (the
        checkpoint belongs to another dataset).
        """
        names = list(state.get("label_names", []))
        if self.label_names and names and names != list(self.label_names):
            raise ValueError(
                f"{type(self).__name__}: the checkpoint's {len(names)} labels differ from this "
                f"dataset's {len(self.label_names)} labels; was it trained on other data?"
            )
        self.label_names = names

    def predict_dataset(self, path: str) -> Dataset:
        """A dataset of the inputs in the user file ``path``, in the training ``inputs`` format.

        Works after ``setup()`` or ``load_state_dict()``. Items are inputs only (no targets).
        """
        raise NotImplementedError(
            f"{type(self).__name__} does not support prediction from files: implement "
            "predict_dataset(path) returning a Dataset that yields the model's inputs"
        )

    # --- loaders --------------------------------------------------------------------------------
    def _per_device(self, global_batch_size: int) -> int:
        """The per-process batch size for a global one; errors when it does not divide."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if global_batch_size % world_size:
            raise ValueError(
                f"batch size {global_batch_size} is not divisible by the world size {world_size}: "
                "the configured batch size is global; pick a multiple of the number of processes"
            )
        return global_batch_size // world_size

    def _eval_sampler(self, dataset: Dataset, per_device_batch_size: int) -> Sampler | None:
        """Under a distributed strategy, a sampler that gives every rank a disjoint, unpadded share
        of an evaluation split (``None`` on one process: Lightning then keeps the order)."""
        kwargs = self.trainer.distributed_sampler_kwargs if self.trainer is not None else None
        if not kwargs or kwargs["num_replicas"] == 1:
            return None
        split = next((name for name in ("val", "test", "train")
                      if getattr(self, f"{name}_set") is dataset), "evaluation")
        check_even_batches(len(dataset), per_device_batch_size, kwargs["num_replicas"], split)
        return UnrepeatedDistributedSampler(dataset, kwargs["num_replicas"], kwargs["rank"])

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        batch_size = self._per_device(batch_size)
        sampler = None if shuffle else self._eval_sampler(dataset, batch_size)
        if shuffle and self.drop_last and batch_size > len(dataset):
            raise ValueError(
                f"batch size {batch_size} is larger than the training split ({len(dataset)} "
                "examples) and drop_last is on: no batch would be produced"
            )
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle,
            sampler=sampler,
            drop_last=self.drop_last and shuffle,
            num_workers=self.num_workers,
            pin_memory=self.pin_memory,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, self.batch_size, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val_set, self.eval_batch_size, shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test_set, self.eval_batch_size, shuffle=False)


class TensorInputs(Dataset):
    """Inputs without targets (prediction): item ``i`` is ``inputs[i]``."""

    def __init__(self, inputs: Tensor) -> None:
        self.inputs = inputs

    def __len__(self) -> int:
        return len(self.inputs)

    def __getitem__(self, index: int) -> Tensor:
        return self.inputs[index]


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` into train/val/test index arrays."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]
