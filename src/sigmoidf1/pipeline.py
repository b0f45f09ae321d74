"""What the entry points do: build everything from the config, fit, test, evaluate.

``train.py`` and ``eval.py`` are thin Hydra wrappers around ``train`` and ``evaluate`` so that
``sigmoidf1-train --help`` stays fast (no torch import on that path).
"""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig, OmegaConf

from sigmoidf1.module import CHECKPOINT_KEY, MultilabelClassifier
from sigmoidf1.utils.config import apply_extras
from sigmoidf1.utils.ddp_relaunch import one_job_per_launch
from sigmoidf1.utils.errors import CheckpointError
from sigmoidf1.utils.instantiate import instantiate_dict
from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.results import print_metrics_table, scalar_metrics, write_json
from sigmoidf1.utils.secrets import scrub
from sigmoidf1.utils.wandb_run import finish_wandb, wandb_callbacks, with_wandb_run

log = get_logger(__name__)

TEST_METRICS_FILE = "test_metrics.json"


def build_model(cfg: DictConfig) -> MultilabelClassifier:
    """Instantiate ``cfg.model`` with ``cfg.loss``; the config is stored for checkpoints."""
    loss = hydra.utils.instantiate(cfg.loss)
    model = hydra.utils.instantiate(cfg.model, loss=loss)
    # set after instantiation: passed as an argument, its `_target_`s would be instantiated too;
    # secrets are masked: this config goes into checkpoints and the loggers' hyperparameters
    model.run_config = scrub(OmegaConf.to_container(cfg, resolve=True))
    return model


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    callbacks += wandb_callbacks(loggers)  # the W&B run id goes into checkpoints (resume continues it)
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


@one_job_per_launch
@with_wandb_run  # W&B: offline fallback, resume id, wandb.finish() (utils/wandb_run.py)
def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; return the validation and test metrics.

    Writes ``<run dir>/test_metrics.json`` and logs the run directory as its last line.
    """
    apply_extras(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = cfg.get("ckpt_path") if cfg.get("train", True) else None
    if ckpt_path:  # fail early, with a clear message, on a missing or unusable checkpoint
        resumed = load_checkpoint(ckpt_path)
        resumed = {key: resumed.get(key) for key in ("epoch", "global_step")}

    log.info(f"Instantiating data <{cfg.data._target_}>")
    datamodule = hydra.utils.instantiate(cfg.data)
    log.info(f"Instantiating model <{cfg.model._target_}> with loss '{cfg.loss.get('name')}'")
    model = build_model(cfg)
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:
        logger.log_hyperparams(model.run_config)

    if cfg.get("train", True):
        if ckpt_path:
            log.info(f"Resuming training from {ckpt_path} (saved at epoch {resumed.get('epoch')}, "
                     f"global step {resumed.get('global_step')}); this run writes to {output_dir}")
        log.info("Starting training")
        try:
            trainer.fit(model, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except RuntimeError as error:
            if ckpt_path and "loading state_dict" in str(error):
                raise CheckpointError(
                    f"{ckpt_path} does not fit the configured model (resume with the model, loss "
                    f"and data options it was trained with): {str(error).splitlines()[0]}"
                ) from error
            raise
    metrics = scalar_metrics(trainer.callback_metrics, "val/")

    if cfg.get("test", True):
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            log.warning("No best checkpoint (checkpointing off or fast_dev_run): testing current weights")
        log.info(f"Testing {best or 'the current weights'}")
        trainer.test(model, datamodule=datamodule, ckpt_path=best or None, weights_only=True,
                     verbose=False)
        # "test": also `test_untuned/*` (the fixed-threshold metrics that ThresholdTuning adds)
        test_metrics = scalar_metrics(trainer.callback_metrics, "test")
        write_json(test_metrics, output_dir / TEST_METRICS_FILE)
        print_metrics_table(test_metrics, title="Test metrics")
        metrics |= test_metrics

    finish_wandb()  # wandb prints its run summary when it finishes: keep the run directory last
    log.info(f"Run directory: {output_dir}")
    return metrics


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a sigmoidf1 checkpoint safely: ``weights_only=True`` never unpickles arbitrary objects.

    Tensors are memory-mapped (cheap for large files). Raises ``FileNotFoundError`` for a missing
    file and ``CheckpointError`` naming the file when it is truncated, foreign, or carries pickled
    objects (whose code is then never run).
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
        raise CheckpointError(
            f"cannot read checkpoint {path}: the file is truncated or not a torch checkpoint "
            f"({type(error).__name__}: {_first_sentence(str(error))})"
        ) from None
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise CheckpointError(
            f"{path} is not a sigmoidf1 checkpoint (no '{CHECKPOINT_KEY}' entry): use a file from "
            "<run dir>/checkpoints/ written by sigmoidf1-train"
        )
    return checkpoint


def _first_sentence(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line.split(". ")[0]


@one_job_per_launch
@with_wandb_run
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint with the data/model config stored inside it; write ``test_metrics.json``."""
    apply_extras(cfg)
    checkpoint = load_checkpoint(cfg.ckpt_path)
    stored = OmegaConf.create(checkpoint[CHECKPOINT_KEY]["config"])
    data_cfg = OmegaConf.merge(stored.data, cfg.get("data") or {})
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True)

    datamodule = hydra.utils.instantiate(data_cfg)
    restore_datamodule_state(datamodule, checkpoint)
    model = build_model(stored)
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:  # this job's config, and the training config of the checkpoint
        logger.log_hyperparams(scrub({**OmegaConf.to_container(cfg, resolve=True),
                                      "trained_with": model.run_config}))
    trainer.test(model, datamodule=datamodule, ckpt_path=str(cfg.ckpt_path), weights_only=True,
                 verbose=False)
    metrics = scalar_metrics(trainer.callback_metrics, "test/")
    output_dir = Path(cfg.paths.output_dir)
    write_json(metrics, output_dir / TEST_METRICS_FILE)
    print_metrics_table(metrics, title=f"Test metrics of {cfg.ckpt_path}")
    finish_wandb()
    log.info(f"Run directory: {output_dir}")
    return metrics


def restore_datamodule_state(datamodule: L.LightningDataModule, checkpoint: dict[str, Any]) -> None:
    """Give ``datamodule`` the preprocessing stored in ``checkpoint`` (Lightning's key: the class name)."""
    state = checkpoint.get(type(datamodule).__qualname__)
    if state:
        datamodule.load_state_dict(state)
