"""Shared base class of the DataModules.

A DataModule here yields batches ``(inputs, targets)``: ``inputs`` is whatever its backbones take (a
float tensor, or a dict of tensors), ``targets`` a float tensor ``[batch, num_labels]`` in {0, 1}.
After ``setup()`` it exposes:

- ``label_names`` (list of str) and ``num_labels``: the model's head is sized from them;
- ``backbone_inputs``: a dict of the input facts a backbone may need (``in_features``,
  ``vocab_size``, ``in_channels`` ...); each backbone takes the keys it declares in its signature.

``batch_size`` is the **global** batch size: under a distributed strategy each process loads
``batch_size // world_size`` examples, so a config means the same optimisation whatever the number
of devices. Validation and test batches come from ``UnrepeatedDistributedSampler`` there: every
example is evaluated exactly once, so the metrics equal those of one process (``samplers.py``).

For prediction on new data, ``state_dict()`` holds everything needed to preprocess new inputs
without the training data (label names, scaler statistics, vocabulary, tokenizer, image size and
normalisation) as plain Python data, so that checkpoints load with
``torch.load(weights_only=True)``; ``load_state_dict(state)`` restores it on a freshly constructed
DataModule, and ``predict_dataset(path)`` reads a user file of inputs into a dataset that yields
``inputs`` in the training format (no targets).

``setup`` may run several times (the pipeline calls it before building the model, Lightning again
inside ``fit``/``test``): only the first call loads. ``prepare_data`` may run in several processes
at once (DDP ranks): every file it writes appears atomically under a unique temporary name first.
``label_names`` and ``backbone_inputs`` are plain Python data (checked after loading), since they
are stored in the checkpoint's hyperparameters.

Loader settings: ``num_workers`` (0 is fastest for in-memory tensors), ``pin_memory`` (``"auto"``:
on when CUDA is available) and persistent workers whenever ``num_workers > 0``.

``frozen_encoder`` (a ``sigmoidf1.data.features.FrozenEncoder``, ``encoder=minilm`` ...): after
loading, each split's inputs are encoded once by a frozen pretrained encoder (cached on disk); the
splits then yield ``(features [dim], target)`` and ``backbone_inputs = {"in_features": dim}``.

**What a DataModule must do** (``pytest tests/test_contracts.py`` checks every config of
``configs/data/`` whose data is on the machine): subclass ``MultilabelDataModule`` and implement
``_load``, which sets three non-empty splits whose items are ``(inputs, target)`` with ``target`` a
float tensor of 0/1 per label, ``label_names`` (a list of str, one per target column) and
``backbone_inputs``; ``backbone_inputs`` and ``state_dict()`` hold plain data only (str, numbers,
lists, dicts), and ``state_dict()`` extends the base class's. Override ``collate_fn`` when items
need more than stacking, and ``predict_dataset`` for ``sigmoidf1-predict``.

The training loader is a ``ResumableDataLoader``: its order depends only on ``(seed, epoch)``
(under DDP each process takes its share of the same order) and a run resumed from a mid-epoch
checkpoint skips the batches it already trained on, on one process or several.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import lightning as L
import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, Sampler

from sigmoidf1.data.resumable import EpochShuffleDistributedSampler, ResumableDataLoader
from sigmoidf1.data.samplers import UnrepeatedDistributedSampler, check_even_batches
from sigmoidf1.utils.errors import ConfigError, DataError

if TYPE_CHECKING:
    from sigmoidf1.data.features import FrozenEncoder


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
        pin_memory: bool | str = "auto",
        seed: int = 0,
        drop_last: bool = False,
        frozen_encoder: FrozenEncoder | None = None,
    ) -> None:
        super().__init__()
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        if num_workers < 0:
            raise ConfigError(f"num_workers must be >= 0, got {num_workers}")
        if pin_memory not in (True, False, "auto"):
            raise ConfigError(f"pin_memory must be true, false or auto, got {pin_memory!r}")
        self.num_workers = num_workers
        self.pin_memory = pin_memory
        self.seed = seed
        self.drop_last = drop_last
        self.frozen_encoder = frozen_encoder
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
        """Load the splits on the first call; later calls (any stage) return at once."""
        if self.train_set is None:
            self._load()
            self.label_names = [str(name) for name in self.label_names]
            self.backbone_inputs = plain_data(dict(self.backbone_inputs), "backbone_inputs")
            if not self.label_names:
                raise DataError(
                    f"{type(self).__name__}: the dataset has no labels (no label column, or every "
                    "example has an empty label set): there is nothing to classify"
                )
            for name in ("train_set", "val_set", "test_set"):
                split = getattr(self, name)
                if split is None or len(split) == 0:
                    raise DataError(f"{type(self).__name__}: the {name[:-4]} split is empty")
            if self.frozen_encoder is not None:
                for name in ("train_set", "val_set", "test_set"):
                    split = getattr(self, name)
                    encoded = self.frozen_encoder.encode_split(
                        name[:-4], split, self.backbone_inputs, self.collate_fn
                    )
                    setattr(self, name, encoded)
                self.backbone_inputs = {"in_features": encoded.features.shape[1]}

    def _load(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    @property
    def collate_fn(self) -> Callable[[list[Any]], Any] | None:
        """How the loaders join items into a batch (``None``: PyTorch's ``default_collate``).
        Override where items need more, e.g. padding texts to the batch's longest."""
        return None

    # --- preprocessing state (checkpoints) and prediction ---------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Preprocessing learned from the training data, as plain data. Subclasses extend it.
        With a frozen encoder: the digest of the encoder the features came from."""
        state: dict[str, Any] = {"label_names": list(self.label_names)}
        digest = getattr(self.frozen_encoder, "_encoder_digest", "")
        if digest:
            state["frozen_encoder_digest"] = digest
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore ``state_dict()``; the label names must agree with data already loaded."""
        names = list(state.get("label_names") or [])
        if names and self.label_names and names != list(self.label_names):
            raise DataError(
                f"{type(self).__name__}: the checkpoint's {len(names)} labels differ from this "
                f"dataset's {len(self.label_names)} labels ({_preview(names)} vs "
                f"{_preview(self.label_names)}); was it trained on other data?"
            )
        if names:
            self.label_names = names
        self._trained_encoder_digest = state.get("frozen_encoder_digest")

    def frozen_encoder_network(self) -> torch.nn.Module:
        """The frozen encoder for new inputs (prediction, export), refused when it is not the
        encoder the model's features came from (its weights differ: a randomly initialised
        encoder, or another weights file), which would make every prediction meaningless."""
        encoder = self.frozen_encoder.build(self.backbone_inputs)
        trained = getattr(self, "_trained_encoder_digest", None)
        if trained and self.frozen_encoder._encoder_digest != trained:
            raise DataError(
                f"the frozen encoder built here ({type(encoder).__name__}) is not the one the "
                "model was trained on: its configuration or weights differ (a randomly "
                "initialised encoder is drawn anew each time it is built: give it weights, e.g. "
                "a weights file)"
            )
        return encoder

    def predict_dataset(self, path: str) -> Dataset:
        """A dataset of model inputs (the training ``inputs`` format, no targets) read from
        ``path``, a CSV or JSONL file (gzip allowed), preprocessed with the training state."""
        raise NotImplementedError(
            f"{type(self).__name__} does not implement predict_dataset(path): it cannot read new "
            "inputs for sigmoidf1-predict (implement it next to _load)"
        )

    def predict_loader(self, dataset: Dataset, batch_size: int | None = None) -> DataLoader:
        """Batches of ``predict_dataset`` items, in order, built like the evaluation loaders
        (override when the collate function of the training loaders expects targets). With a
        ``frozen_encoder`` the inputs are encoded first (not cached)."""
        if self.frozen_encoder is not None:
            self.frozen_encoder_network()  # built once, checked against the trained one
            dataset = self.frozen_encoder.encode_inputs(
                dataset, self.backbone_inputs, self.collate_fn
            )
        return self._loader(dataset, batch_size or self.eval_batch_size, shuffle=False)

    def check_targets(self, targets: torch.Tensor | np.ndarray, source: str) -> None:
        """Raise ``DataError`` when no training example has any label (a label-free dataset)."""
        if targets.shape[-1] == 0 or float(targets.sum()) == 0.0:
            raise DataError(
                f"{source}: no example has any label (all {targets.shape[-1]} label columns are 0 "
                f"in {len(targets)} rows): a label-free dataset cannot train a classifier"
            )

    # --- loaders --------------------------------------------------------------------------------
    def _per_device(self, global_batch_size: int) -> int:
        """The per-process batch size for a global one; errors when it does not divide."""
        world_size = self.trainer.world_size if self.trainer is not None else 1
        if global_batch_size % world_size:
            raise ConfigError(
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
        split = next(
            (name for name in ("val", "test", "train") if getattr(self, f"{name}_set") is dataset),
            "evaluation",
        )
        check_even_batches(len(dataset), per_device_batch_size, kwargs["num_replicas"], split)
        return UnrepeatedDistributedSampler(dataset, kwargs["num_replicas"], kwargs["rank"])

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        batch_size = self._per_device(batch_size)
        sampler = None if shuffle else self._eval_sampler(dataset, batch_size)
        if shuffle and self.drop_last and batch_size > len(dataset):
            raise ConfigError(
                f"batch size {batch_size} is larger than the training split ({len(dataset)} "
                "examples) and drop_last is on: no batch would be produced"
            )
        kwargs = {
            "batch_size": batch_size,
            "drop_last": self.drop_last and shuffle,
            "num_workers": self.num_workers,
            "pin_memory": self._pin_memory(),
            "persistent_workers": self.num_workers > 0,
            "collate_fn": self.collate_fn,
            # the loader's own generator: iterating never consumes the global random state
            "generator": torch.Generator().manual_seed(self.seed or 0),
        }
        if shuffle:
            distributed = self.trainer.distributed_sampler_kwargs if self.trainer else None
            if distributed and distributed["num_replicas"] > 1:
                # the same order on every rank: a missing seed is 0 there (Lightning's default)
                seed = self.seed if self.seed is not None else 0
                kwargs["sampler"] = EpochShuffleDistributedSampler(
                    dataset, distributed["num_replicas"], distributed["rank"], seed
                )
                return ResumableDataLoader(
                    dataset, seed=seed, position=self._batches_done, **kwargs
                )
            return ResumableDataLoader(
                dataset, seed=self.seed, position=self._batches_done, **kwargs
            )
        # evaluation splits: under DDP the unpadded sampler, else the dataset's order
        return DataLoader(dataset, shuffle=False, sampler=sampler, **kwargs)

    def _pin_memory(self) -> bool:
        """Page-locked batches speed up copies to a GPU; on a CPU-only machine they only cost."""
        return torch.cuda.is_available() if self.pin_memory == "auto" else bool(self.pin_memory)

    def _batches_done(self) -> int:
        """Batches of the current training epoch already done: 0, except when a run resumes in
        the middle of an epoch (Lightning's count, restored from the checkpoint)."""
        trainer = self.trainer
        if trainer is None or not trainer.training:
            return 0
        return trainer.fit_loop.epoch_loop.batch_progress.current.ready

    def train_dataloader(self) -> DataLoader:
        if self.batch_size > len(self.train_set):
            raise ConfigError(
                f"data.batch_size={self.batch_size} is larger than the training split "
                f"({len(self.train_set)} examples): every epoch would be one partial batch; "
                f"use data.batch_size <= {len(self.train_set)}"
            )
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


def plain_data(value: Any, name: str) -> Any:
    """``value`` with numpy scalars and arrays turned into Python numbers and lists, tuples into
    lists; raises ``TypeError`` naming ``name`` for anything that is not str/int/float/bool/None,
    a list or a str-keyed dict of those (what ``torch.load(weights_only=True)`` accepts)."""
    if isinstance(value, np.generic | np.ndarray):
        value = value.tolist()
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, list | tuple):
        return [plain_data(item, f"{name}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict) and all(isinstance(key, str) for key in value):
        return {key: plain_data(item, f"{name}.{key}") for key, item in value.items()}
    raise TypeError(f"{name} must be plain Python data (checkpoints store it), got {value!r}")


def columns_preview(columns: list[str], limit: int = 12) -> str:
    """``a, b, c, ... (N columns)``: a short listing for error messages."""
    shown = ", ".join(map(str, columns[:limit]))
    more = f", ... ({len(columns)} columns)" if len(columns) > limit else ""
    return (shown + more) if columns else "(none)"


def _preview(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(names[:limit])
    return f"[{shown}{', ...' if len(names) > limit else ''}] ({len(names)})"


def split_indices(
    n: int, val_fraction: float, test_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Deterministic random split of ``range(n)`` into train/val/test index arrays."""
    for name, value in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= value < 1.0:
            raise ConfigError(f"{name} must be in [0, 1), got {value}")
    if val_fraction + test_fraction >= 1.0:
        raise ConfigError(
            f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}"
        )
    order = np.random.default_rng(seed).permutation(n)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    return order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]
