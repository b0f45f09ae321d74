"""Frozen pretrained encoders and the feature cache (``encoder=minilm``, ``efficientnet_lite0``).

With a frozen encoder nothing upstream of the head learns, so the encoder's output for an example
never changes: ``FrozenEncoder`` computes the features of each split once, caches them, and the
DataModule then serves ``(features [batch, dim], targets [batch, num_labels])``; the model trains a
small head (the ``mlp`` backbone, ``in_features = dim``) on them. This is the paper's protocol (a
head on a frozen pretrained encoder) and the quick way to try a loss.

Any DataModule takes it as ``frozen_encoder`` (``MultilabelDataModule``): it loads its splits as
usual (download, tokenising, image preprocessing), then each split's inputs go through the encoder
once, in evaluation mode, without gradients, in batches of ``batch_size``, with a progress bar.

The cache: ``<cache_dir>/<split>-<key>.pt`` holding ``{"features": [n, dim]}`` (``dtype``), written
atomically. ``key`` is a SHA-256 digest of

- the encoder: its config (class and options) and its weights, so another checkpoint, pooling or
  image size is another key;
- the split's inputs as the encoder sees them, which covers the dataset, the split and the
  preprocessing. A dataset states what that is made of with a ``fingerprint()`` method yielding
  byte chunks (token ids with the padding id for texts; pixels and normalisation for in-memory
  images; file paths, sizes and modification times with the preprocessing for image files); a
  dataset without one is hashed item by item (slower: every item is read). A dataset with a
  ``lengths()`` method (``[n]`` item lengths) is encoded shortest first, so that each batch pads
  little.

A change to any of them is a cache miss; stale files are left in place (delete the folder to
reclaim the space). The log says, per split, whether the features were computed or reused.
Training-time augmentation does not apply to cached features: splits are encoded unaugmented.
Under DDP every process sets its data up: on a cold cache each one encodes (the identical files are
renamed into place atomically, the last one wins); later runs reuse them.
"""

from __future__ import annotations

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.apply_func import move_data_to_device
from omegaconf import OmegaConf
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from sigmoidf1.utils.errors import ConfigError
from sigmoidf1.utils.files import atomic_write
from sigmoidf1.utils.hashing import tensor_bytes
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

FORMAT_VERSION = 1  # bump when the cached content changes meaning
Collate = Callable[[list[Any]], Any]
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


class EncodedSplit(Dataset):
    """Cached features ``[n, dim]`` and the split's targets; items ``(features [dim] float32,
    target [num_labels])``, or the features alone when there are no targets (prediction)."""

    def __init__(self, features: Tensor, targets: Tensor | Dataset | None = None) -> None:
        if targets is not None and len(targets) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(targets)} target rows")
        self.features, self.targets = features, targets

    def __len__(self) -> int:
        return len(self.features)

    def __getitem__(self, index: int) -> Any:
        features = self.features[index].float()
        return features if self.targets is None else (features, self.targets[index])


class FrozenEncoder:
    """Encode DataModule splits with a frozen backbone, once, through an on-disk cache.

    Args:
        encoder: a backbone factory (a config with ``_partial_: true``, instantiated by Hydra): it
            is completed from the DataModule's ``backbone_inputs`` like any backbone
            (``TransformerBackbone`` with ``pooling: mean`` for all-MiniLM-L6-v2,
            ``EfficientNetLite`` ...) and must expose ``out_features``.
        cache_dir: the cache folder (``${paths.data_dir}/features``); ``None`` = no cache.
        batch_size: examples per encoder forward pass.
        dtype: how features are stored: ``float32``, or ``float16`` / ``bfloat16`` (half the disk
            and memory; the head always computes in float32).
        device: where the encoder runs: ``auto`` (CUDA when available), ``cpu``, ``cuda`` ...
    """

    def __init__(
        self,
        encoder: Callable[..., nn.Module],
        cache_dir: str | None = None,
        batch_size: int = 64,
        dtype: str = "float32",
        device: str = "auto",
    ) -> None:
        if dtype not in DTYPES:
            raise ConfigError(f"frozen_encoder.dtype must be one of {', '.join(DTYPES)}: {dtype!r}")
        if batch_size < 1:
            raise ConfigError(f"frozen_encoder.batch_size must be >= 1, got {batch_size}")
        self.factory = encoder
        self.cache_dir = Path(cache_dir) if cache_dir else None
        self.batch_size = batch_size
        self.dtype = DTYPES[dtype]
        self.device = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        )
        self._encoder: nn.Module | None = None
        self._encoder_digest = ""

    # --- the encoder ----------------------------------------------------------------------------
    def build(self, backbone_inputs: dict[str, Any]) -> nn.Module:
        """The encoder for this data (built on the first call), frozen, in eval mode."""
        if self._encoder is None:
            from sigmoidf1.backbones import build_backbone

            encoder = build_backbone(self.factory, backbone_inputs)
            encoder.requires_grad_(False)
            self._encoder = encoder.eval()
            self._encoder_digest = encoder_digest(self.factory, encoder)
        return self._encoder

    # --- splits ---------------------------------------------------------------------------------
    def cache_path(self, split: str, dataset: Dataset) -> Path | None:
        """``<cache_dir>/<split>-<key>.pt`` (see the module docstring); ``None`` without a cache."""
        if self.cache_dir is None:
            return None
        digest = hashlib.sha256(f"v{FORMAT_VERSION}:{split}:{self._encoder_digest}".encode())
        for chunk in inputs_fingerprint(dataset):
            digest.update(chunk)
        return self.cache_dir / f"{split}-{digest.hexdigest()[:24]}.pt"

    def encode_split(
        self,
        split: str,
        dataset: Dataset,
        backbone_inputs: dict[str, Any],
        collate_fn: Collate | None = None,
    ) -> EncodedSplit:
        """``dataset`` (items ``(inputs, target)``, batched by ``collate_fn``) as cached features
        with the same targets."""
        encoder = self.build(backbone_inputs)
        if getattr(dataset, "augment", False):
            dataset.augment = False  # cached features are drawn once: encode the images as they are
        path = self.cache_path(split, dataset)
        features = _load_cached(path) if path is not None else None
        if features is not None and len(features) == len(dataset):
            log.info(f"{split} features: reused {tuple(features.shape)} from {path}")
        else:
            start = time.perf_counter()
            features = self.encode(
                encoder, dataset, f"encoding {split}", collate_fn, with_targets=True
            )
            seconds = time.perf_counter() - start
            where = f", cached at {path}" if path is not None else ""
            log.info(
                f"{split} features: computed {tuple(features.shape)} in {seconds:.1f} s{where}"
            )
            if path is not None:
                atomic_write(path, lambda tmp: torch.save({"features": features}, tmp))
        return EncodedSplit(features, split_targets(dataset))

    @torch.inference_mode()
    def encode(
        self,
        encoder: nn.Module,
        dataset: Dataset,
        description: str,
        collate_fn: Collate | None = None,
        with_targets: bool = False,
    ) -> Tensor:
        """Features ``[len(dataset), encoder.out_features]`` (``dtype``, on the CPU) of the inputs
        of every item (``(inputs, target)`` when ``with_targets``, else ``inputs``), batched by
        ``collate_fn`` (the DataModule's).

        Texts are encoded shortest first (less padding per batch), then put back in order.
        """
        encoder.to(self.device)
        order = encoding_order(dataset)
        loader = DataLoader(
            dataset, batch_size=self.batch_size, sampler=order.tolist(), collate_fn=collate_fn
        )
        chunks = []
        for batch in _progress(loader, len(dataset), description):
            inputs = batch[0] if with_targets else batch
            chunks.append(encoder(move_data_to_device(inputs, self.device)).float().cpu())
        features = torch.empty(len(dataset), encoder.out_features, dtype=self.dtype)
        features[order] = torch.cat(chunks).to(self.dtype)
        encoder.cpu()  # the encoder does not occupy the GPU while the head trains
        return features

    def encode_inputs(
        self,
        dataset: Dataset,
        backbone_inputs: dict[str, Any],
        collate_fn: Collate | None = None,
    ) -> EncodedSplit:
        """New inputs (prediction: items are ``inputs``, no targets) as features, not cached."""
        encoder = self.build(backbone_inputs)
        return EncodedSplit(self.encode(encoder, dataset, "encoding inputs", collate_fn))


def encoder_digest(factory: Callable[..., nn.Module], encoder: nn.Module) -> str:
    """SHA-256 of the encoder's config (class and options) and of its weights and buffers."""
    digest = hashlib.sha256(json.dumps(describe_factory(factory), sort_keys=True).encode())
    for name, tensor in encoder.state_dict().items():
        digest.update(name.encode())
        digest.update(tensor_bytes(tensor))
    return digest.hexdigest()


def describe_factory(factory: Callable[..., Any]) -> dict[str, Any]:
    """``{"target": "module.Class", "options": {...}}`` of a factory (a ``functools.partial``)."""
    func = factory.func if isinstance(factory, functools.partial) else factory
    options = factory.keywords if isinstance(factory, functools.partial) else {}
    options = {
        key: OmegaConf.to_container(value) if OmegaConf.is_config(value) else value
        for key, value in options.items()
    }
    target = f"{getattr(func, '__module__', '')}.{getattr(func, '__qualname__', repr(func))}"
    return {"target": target, "options": json.loads(json.dumps(options, default=str))}


def inputs_fingerprint(dataset: Dataset) -> Iterator[bytes]:
    """Byte chunks that identify what the encoder would see for each item of ``dataset``: the
    dataset's own ``fingerprint()`` where it has one (see the module docstring), else its inputs
    item by item."""
    fingerprint = getattr(dataset, "fingerprint", None)
    if fingerprint is not None:
        yield from fingerprint()
        return
    for index in range(len(dataset)):
        item = dataset[index]
        inputs = item[0] if isinstance(item, tuple) else item
        for tensor in _tensors(inputs):
            yield tensor_bytes(tensor)


def split_targets(dataset: Dataset) -> Tensor | Dataset:
    """The ``[n, num_labels]`` targets of a split (its ``targets``, else read item by item)."""
    targets = getattr(dataset, "targets", None)
    if targets is not None:
        return targets
    return torch.stack([torch.as_tensor(dataset[i][1]) for i in range(len(dataset))])


def encoding_order(dataset: Dataset) -> Tensor:
    """The order to encode items in: shortest first where the dataset tells its items' lengths
    (``lengths()``: each batch is padded to its longest item), else as they are."""
    lengths = getattr(dataset, "lengths", None)
    if lengths is not None:
        return torch.argsort(lengths(), stable=True)
    return torch.arange(len(dataset))


def _load_cached(path: Path) -> Tensor | None:
    if not path.is_file():
        return None
    try:
        return torch.load(path, weights_only=True)["features"]
    except Exception as error:  # a corrupt cache is recomputed, not fatal
        log.warning(f"ignoring unreadable feature cache {path} ({type(error).__name__})")
        return None


def _tensors(value: Any) -> Iterator[Tensor]:
    if isinstance(value, Tensor):
        yield value
    elif isinstance(value, dict):
        for key in sorted(value):
            yield from _tensors(value[key])
    elif isinstance(value, list | tuple):
        for item in value:
            yield from _tensors(item)


def _progress(loader: DataLoader, total: int, description: str) -> Iterator[Any]:
    """Batches of ``loader`` with a progress bar on a terminal (counted in examples), elsewhere a
    log line a minute."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    console = Console(stderr=True)
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    started = last_line = time.monotonic()
    done = 0
    with progress:
        task = progress.add_task(description, total=total)
        for batch in loader:
            yield batch
            count = next(_tensors(batch)).shape[0]
            done += count
            progress.advance(task, count)
            # no bar without a terminal (SLURM, nohup, a pipe): a log line every minute instead
            if not console.is_terminal and time.monotonic() - last_line >= 60:
                last_line = time.monotonic()
                log.info(f"{description}: {done}/{total} examples, {last_line - started:.0f} s")
