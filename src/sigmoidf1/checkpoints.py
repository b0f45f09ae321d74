"""Reading checkpoints safely, and the one way a trained model and its data come back from one.

``sigmoidf1-eval`` and ``sigmoidf1-predict`` (and users' scripts) go through ``load_trained``:

    checkpoint file --torch.load(weights_only=True)--> hyperparameters + weights
        -> MultilabelClassifier(**hyper_parameters) with its weights  (= load_from_checkpoint)
        -> the DataModule from the stored data config, given the stored preprocessing state

A checkpoint is data, never code, in two steps: ``torch.load(weights_only=True)`` never unpickles
arbitrary objects, and the configs the file stores (``STORED_CONFIGS``: the data config, the
backbone, loss, optimizer and scheduler), which Hydra would import and call, are checked as a whole
before anything in them is imported or called (``sigmoidf1.utils.trust``: the template's own
families, and what the user trusts with ``trusted_targets``). See docs/security.md.
"""

from __future__ import annotations

import pickle
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from omegaconf import OmegaConf

from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.errors import CheckpointError
from sigmoidf1.utils.trust import check_targets

HPARAMS_KEY = MultilabelClassifier.CHECKPOINT_HYPER_PARAMS_KEY  # "hyper_parameters"
# The configs a checkpoint stores that loaders instantiate: the config key a user knows each by,
# and where it sits in the hyperparameters. The rest of the stored run config (trainer, callbacks,
# loggers, and the copies under model and loss) is a record that no loader instantiates.
STORED_CONFIGS = {
    "data": ("run_config", "data"),
    "model.backbone": ("backbone",),
    "loss": ("loss",),
    "model.optimizer": ("optimizer",),
    "model.scheduler": ("scheduler",),
}


def read_checkpoint(
    path: str | Path, trusted_targets: Any = (), replaced: Iterable[str] = ()
) -> dict[str, Any]:
    """Load a sigmoidf1 checkpoint with ``weights_only=True``, tensors memory-mapped, and check
    the targets of its ``STORED_CONFIGS`` (``trusted_targets``: the user's trusted module paths;
    ``replaced``: hyperparameter names the caller replaces, whose stored configs are not used).

    Raises ``FileNotFoundError`` for a missing file and ``CheckpointError`` naming the file when it
    is truncated, foreign (no classifier hyperparameters), carries pickled objects (whose code
    is then never run), or stores a config naming an untrusted target (nothing of it is imported).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        what = f" ({found.group(1)})" if found else ""
        raise CheckpointError(
            f"refusing to load {path}: it holds pickled Python objects{what} that could run code "
            "when loaded; sigmoidf1 loads checkpoints with torch.load(weights_only=True) only"
        ) from None
    except Exception as error:  # torch raises several types for truncated or foreign files
        first_line = (str(error).strip().splitlines() or [""])[0].split(". ")[0]
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a torch checkpoint "
            f"({type(error).__name__}: {first_line})"
        ) from None
    hparams = checkpoint.get(HPARAMS_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(hparams, Mapping) or "label_names" not in hparams:
        raise CheckpointError(
            f"{path} is not a sigmoidf1 checkpoint (no classifier hyperparameters): use a file "
            "from <run dir>/checkpoints/ written by sigmoidf1-train"
        )
    check_targets(stored_configs(hparams, replaced), "", trusted_targets, source=str(path))
    return checkpoint


def stored_configs(hparams: Mapping[str, Any], replaced: Iterable[str] = ()) -> dict[str, Any]:
    """The ``STORED_CONFIGS`` of a checkpoint's hyperparameters, nested by their config keys
    (``{"data": ..., "model": {"backbone": ...}, ...}``), without those under ``replaced``."""
    stored: dict[str, Any] = {}
    for key, (name, *inner) in STORED_CONFIGS.items():
        if name in replaced:
            continue
        config = hparams.get(name)
        for part in inner:
            config = config.get(part) if isinstance(config, Mapping) else None
        *parents, last = key.split(".")
        node = stored
        for parent in parents:
            node = node.setdefault(parent, {})
        node[last] = config
    return stored


def classifier_from(checkpoint: Mapping[str, Any]) -> MultilabelClassifier:
    """The model of a loaded checkpoint, weights and thresholds restored, in eval mode.

    The same as ``MultilabelClassifier.load_from_checkpoint(path)``, from an already read file.
    """
    model = MultilabelClassifier(**checkpoint[HPARAMS_KEY])
    model.load_state_dict(checkpoint["state_dict"])
    return model.eval()


def trained_config(checkpoint: Mapping[str, Any]) -> Any:
    """The run config the checkpoint was trained with (a ``DictConfig``)."""
    return OmegaConf.create(checkpoint[HPARAMS_KEY].get("run_config") or {})


def datamodule_from(
    checkpoint: Mapping[str, Any], data_overrides: Mapping[str, Any] | None = None
) -> L.LightningDataModule:
    """The training DataModule, from the stored data config (with ``data_overrides`` merged in),
    given the preprocessing state Lightning stored under the DataModule's class name."""
    stored = trained_config(checkpoint)
    if "data" not in stored:
        raise CheckpointError("the checkpoint holds no data config (was it written by sigmoidf1?)")
    datamodule = hydra.utils.instantiate(OmegaConf.merge(stored.data, data_overrides or {}))
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
    return datamodule


def load_trained(
    path: str | Path,
    data_overrides: Mapping[str, Any] | None = None,
    trusted_targets: Any = (),
) -> tuple[MultilabelClassifier, L.LightningDataModule]:
    """``(model, datamodule)`` of a checkpoint file; see the module docstring."""
    checkpoint = read_checkpoint(path, trusted_targets)
    datamodule = datamodule_from(checkpoint, data_overrides)
    return classifier_from(checkpoint), datamodule
