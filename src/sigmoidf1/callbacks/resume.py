"""What exact resumption needs beyond Lightning's own checkpoint content.

Lightning restores the weights, the optimizer and scheduler states, the loop counters and the
callbacks' states. Two things are missing for a resumed run to equal an uninterrupted one:

- the random states (dropout masks, augmentations): ``RestoreRandomState`` stores the python,
  numpy and torch (CPU and CUDA) generators in every checkpoint, as tensors and plain numbers so
  that the checkpoint loads with ``weights_only=True``, and restores them on resume;
- the top-k record of ``ModelCheckpoint``: Lightning forgets the best scores when the checkpoint
  directory changes, and every run (a resumed one too) writes into its own directory. The
  ``ModelCheckpoint`` here copies the previous run's kept checkpoints into the new directory and
  restores the record, so the "best" checkpoint of a resumed run is the one of an uninterrupted run.

``last.ckpt`` is the latest epoch, always. Since Lightning 2.6, ``save_last=True`` writes it only
when a top-k checkpoint is saved at the same step, so with ``save_top_k=1`` it is a copy of the best
checkpoint and a resume from it silently goes back to the last improvement; ``save_last="link"``
links it to the latest top-k file, the same problem. The ``ModelCheckpoint`` here writes it after
every validation (or training epoch end, where Lightning checkpoints there), as a hard link to the
epoch's checkpoint when that one was just saved (same bytes, one serialisation per epoch).
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import ModelCheckpoint as _LightningModelCheckpoint
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import rank_zero_only

from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def collect_random_state() -> dict[str, Any]:
    """The python, numpy and torch random states as tensors and plain data."""
    _, keys, position, has_gauss, cached_gaussian = np.random.get_state()
    version, python_state, gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": {
            "keys": torch.from_numpy(keys.astype(np.int64)),
            "position": int(position),
            "has_gauss": int(has_gauss),
            "cached_gaussian": float(cached_gaussian),
        },
        "python": {"version": int(version), "state": list(python_state), "gauss": gauss},
    }


def apply_random_state(state: dict[str, Any]) -> None:
    """Inverse of ``collect_random_state``."""
    torch.set_rng_state(state["torch"])
    if state.get("cuda") and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    numpy_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            numpy_state["keys"].numpy().astype(np.uint32),
            numpy_state["position"],
            numpy_state["has_gauss"],
            numpy_state["cached_gaussian"],
        )
    )
    python_state = state["python"]
    random.setstate((python_state["version"], tuple(python_state["state"]), python_state["gauss"]))


class RestoreRandomState(L.Callback):
    """Save the global random states in checkpoints; restore them when training resumes.

    The state saved is the one at the moment of saving (end of a validation epoch for ``last.ckpt``,
    end of a batch for an interrupt checkpoint), which is where the resumed run continues.
    Restoring happens only when fitting (not when a checkpoint is tested).
    """

    def __init__(self) -> None:
        self._fitting = False

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._fitting = trainer.state.fn == "fit"

    def state_dict(self) -> dict[str, Any]:
        return collect_random_state()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if self._fitting and state_dict:
            apply_random_state(state_dict)


class ModelCheckpoint(_LightningModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that keeps its top-k record across a resume into a new run
    directory, and keeps ``last.ckpt`` at the latest epoch: a hard link to the epoch's checkpoint
    when that one was just saved, else a save of its own (see the module docstring). Arguments are
    Lightning's."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def _save_last_if_stale(self, trainer: L.Trainer) -> None:
        """Write ``last.ckpt`` unless it already holds this step (or nothing may be saved now)."""
        if (
            self.save_last is not True
            or trainer.fast_dev_run
            or trainer.state.fn != TrainerFn.FITTING
            or trainer.sanity_checking
            or getattr(self, "_last_step_in_last", None) == trainer.global_step
        ):
            return
        self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_checkpoint(self, trainer: L.Trainer, filepath: str) -> None:
        if filepath == self.last_model_path:
            self._last_step_in_last = trainer.global_step
        source = self._last_checkpoint_saved
        if (
            filepath != self.last_model_path
            or self._last_global_step_saved != trainer.global_step
            or not source
            or source == filepath
        ):
            if trainer.is_global_zero:
                _unshare(filepath)  # writing into a linked file would rewrite the other name too
            super()._save_checkpoint(trainer, filepath)
            return
        if trainer.is_global_zero:
            _link_or_copy(source, filepath)
        trainer.strategy.barrier()
        self._last_checkpoint_saved = filepath
        if trainer.is_global_zero:
            for logger in trainer.loggers:
                logger.after_save_checkpoint(self)

    def on_load_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        self._fitting = trainer.state.fn == "fit"

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        old_dir = state_dict.get("dirpath")
        if (
            not getattr(self, "_fitting", False)
            or old_dir is None
            or self.dirpath is None
            or Path(old_dir).resolve() == Path(self.dirpath).resolve()
            or state_dict.get("monitor") != self.monitor
        ):
            super().load_state_dict(state_dict)
            return
        kept = dict(state_dict.get("best_k_models") or {})
        missing = [path for path in kept if not Path(path).is_file()]
        if missing:
            log.warning(
                f"cannot carry the best-checkpoint record over: {missing[0]} is gone; "
                "the best checkpoint will be chosen among the resumed epochs only"
            )
            super().load_state_dict(state_dict)
            return
        moved = {path: str(Path(self.dirpath) / Path(path).name) for path in kept}
        self._copy(moved)
        self.best_k_models = {moved[path]: score for path, score in kept.items()}
        self.best_model_score = state_dict.get("best_model_score")
        self.best_model_path = moved.get(state_dict.get("best_model_path", ""), "")
        self.kth_best_model_path = moved.get(state_dict.get("kth_best_model_path", ""), "")
        self.kth_value = state_dict.get("kth_value", self.kth_value)
        self.current_score = state_dict.get("current_score")
        if moved:
            log.info(f"Copied the previous run's best checkpoint(s) into {self.dirpath}")

    @rank_zero_only
    def _copy(self, moved: dict[str, str]) -> None:
        Path(self.dirpath).mkdir(parents=True, exist_ok=True)
        for source, target in moved.items():
            if not Path(target).exists():
                shutil.copy2(source, target)


def _unshare(path: str) -> None:
    """Remove ``path`` if it is a hard link (another name shares its bytes), so that the next write
    creates a new file instead of truncating the shared one."""
    try:
        if os.stat(path).st_nlink > 1:
            os.remove(path)
    except FileNotFoundError:
        pass


def _link_or_copy(source: str, target: str) -> None:
    """``target`` becomes a hard link to ``source`` (a copy where links are not supported)."""
    if os.path.lexists(target):
        os.remove(target)
    try:
        os.link(source, target)
    except OSError:
        shutil.copyfile(source, target)
