"""What the entry points do: build everything from the config, fit, test, evaluate.

    config -> DataModule (prepared and set up: label names, backbone inputs)
           -> MultilabelClassifier(backbone, label names, loss, optimizer ...)
           -> Trainer(strategy, callbacks, loggers) -> fit -> test the best checkpoint

``train.py`` and ``eval.py`` are thin Hydra wrappers around ``train`` and ``evaluate`` so that
``sigmoidf1-train --help`` stays fast (no torch import on that path).
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import hydra
import lightning as L
import torch
from lightning.pytorch.callbacks import EarlyStopping, LearningRateMonitor
from lightning.pytorch.loggers import CSVLogger
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from sigmoidf1.baseline import BASELINE_KEY, frequent_labels_baseline
from sigmoidf1.checkpoints import (
    HPARAMS_KEY,
    classifier_from,
    datamodule_from,
    read_checkpoint,
    trained_config,
)
from sigmoidf1.loss_check import check_loss_covers_labels
from sigmoidf1.lr_find import find_learning_rate
from sigmoidf1.metrics import label_counts
from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.config import apply_extras
from sigmoidf1.utils.ddp_relaunch import one_job_per_launch
from sigmoidf1.utils.errors import CheckpointError, ConfigError, describe
from sigmoidf1.utils.instantiate import instantiate_dict
from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.results import print_metrics_table, scalar_metrics, write_json
from sigmoidf1.utils.secrets import scrub
from sigmoidf1.utils.slurm import with_requeue_resume
from sigmoidf1.utils.wandb_run import finish_wandb, wandb_callbacks, with_wandb_run

log = get_logger(__name__)

TEST_METRICS_FILE = "test_metrics.json"
# Config sections that decide what a checkpoint's weights mean: a resume must not change them.
RESUME_SECTIONS = ("data", "model", "loss")
# Keys inside those sections that change how, not what, is computed.
RESUME_HARMLESS = {"num_workers", "pin_memory", "persistent_workers", "data_dir", "eval_batch_size"}


def setup_datamodule(data_cfg: DictConfig) -> L.LightningDataModule:
    """Instantiate the DataModule and set it up, so that its label names and inputs are known."""
    log.info(f"Instantiating data <{data_cfg._target_}>")
    datamodule = hydra.utils.instantiate(data_cfg)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


def build_model(cfg: DictConfig, datamodule: L.LightningDataModule) -> MultilabelClassifier:
    """``cfg.model`` sized from ``datamodule``, with ``cfg.loss``; the run config is stored with it
    (secrets masked) for checkpoints and the loggers' hyperparameters. Refuses a loss that cannot
    learn the data's label space (``sigmoidf1.loss_check``)."""
    # for psp@k, the frequent-labels baseline and the loss check
    train_label_counts, train_size = label_counts(datamodule.train_set)
    check_loss_covers_labels(cfg.loss, train_label_counts, train_size, datamodule.batch_size)
    log.info(f"Instantiating model <{cfg.model._target_}> with loss '{cfg.loss.get('name')}'")
    # partial first: arguments given to `instantiate` become OmegaConf nodes, which takes
    # seconds for the 17k label names of data=wordnet
    make_model = hydra.utils.instantiate(cfg.model, _partial_=True, _recursive_=False)
    return make_model(
        label_names=datamodule.label_names,
        backbone_inputs=datamodule.backbone_inputs,
        train_label_counts=train_label_counts.tolist(),
        train_size=train_size,
        loss=cfg.loss,
        monitor=cfg.get("optimized_metric", "val/f1_macro"),
        run_config=scrub(OmegaConf.to_container(cfg, resolve=True)),
    )


def build_trainer(cfg: DictConfig) -> L.Trainer:
    callbacks = instantiate_dict(cfg.get("callbacks"))
    loggers = instantiate_dict(cfg.get("logger"))
    if not loggers:  # LearningRateMonitor refuses to run without a logger
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
    # the W&B run id goes into checkpoints (a resume continues the run); its summary keeps the best
    metric, mode = cfg.get("optimized_metric"), cfg.get("optimized_mode", "max")
    callbacks += wandb_callbacks(loggers, metric, mode)
    return hydra.utils.instantiate(cfg.trainer, callbacks=callbacks, logger=loggers or False)


def keep_csv_metrics(loggers: list[Any], up_to_step: int) -> None:
    """Keep the training rows of the run directory's ``metrics.csv`` up to ``up_to_step`` when a
    run continues in its own directory (a requeued SLURM job): Lightning's ``CSVLogger`` deletes
    the file when it starts, so they are handed to its writer, which writes them back first.
    Rows of an earlier test stage (``test*`` metrics) go: the continued run tests anew."""
    if rank_zero_only.rank != 0:
        return
    for logger in loggers:
        path = Path(logger.log_dir) / "metrics.csv" if isinstance(logger, CSVLogger) else None
        if path is None or not path.is_file():
            continue
        with open(path, newline="") as handle:
            rows = [
                {key: value for key, value in row.items() if value not in ("", None)}
                for row in csv.DictReader(handle)
            ]
        kept = [
            row
            for row in rows
            if float(row.get("step", "inf")) <= up_to_step
            and not any(key.startswith("test") for key in row)
        ]
        writer = logger.experiment  # removes the file; the rows go back in at its first save
        writer.metrics = kept + writer.metrics
        log.info(f"Continuing {path} ({len(kept)} rows up to step {up_to_step} kept)")


def add_baseline(
    model: MultilabelClassifier,
    datamodule: L.LightningDataModule,
    metrics: dict[str, float],
    trainer: L.Trainer,
) -> None:
    """Add the frequent-labels baseline's test micro-F1 (``sigmoidf1.baseline``) to ``metrics``,
    the trainer's loggers (W&B, CSV ...) and the log beside the model's; warn when the model does
    not beat it."""
    baseline = frequent_labels_baseline(model, datamodule.test_set)
    if baseline is None:
        return
    metrics[BASELINE_KEY] = baseline.f1_micro
    for logger in trainer.loggers:  # rank zero only, as every logger
        logger.log_metrics({BASELINE_KEY: baseline.f1_micro}, step=trainer.global_step)
        logger.save()  # the test stage has ended: nothing else flushes it
    names = ", ".join(baseline.names[:4]) + (", ..." if len(baseline.names) > 4 else "")
    model_f1 = metrics.get("test/f1_micro")
    log.info(
        f"Frequent-labels baseline (the {len(baseline.names)} most frequent training labels for "
        f"every example: {names}): test micro-F1 {baseline.f1_micro:.4f}"
        + (f"; the model: {model_f1:.4f}" if model_f1 is not None else "")
    )
    if model_f1 is not None and model_f1 <= baseline.f1_micro:
        log.warning(
            "the model does not beat predicting the most frequent labels (test micro-F1): it has "
            "not learned from its inputs. Train longer (trainer.max_epochs), or see docs/data.md "
            "for the loss and batch size of large label spaces"
        )


def set_matmul_precision(precision: str | None) -> None:
    """On CUDA, let float32 matrix products use TF32 (``"high"``) or bf16 (``"medium"``) tensor
    cores; CPU runs keep full float32 (their results, and exact resumes, stay unchanged)."""
    if precision and torch.cuda.is_available():
        torch.set_float32_matmul_precision(precision)


def report_early_stop(trainer: L.Trainer) -> None:
    """One line when early stopping ended the fit (Lightning says nothing by default)."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStopping) and callback.stopped_epoch > 0:
            best = callback.best_score
            log.info(
                f"Early stopping after epoch {callback.stopped_epoch}: {callback.monitor} did not "
                f"improve for {callback.patience} validation epochs (best {float(best):.4f})"
            )


# What a run directory holds before anything has run: Hydra's files and the logs.
STARTUP_FILES = {".hydra", "config_tree.log"}


@contextmanager
def discard_run_dir_if_refused(output_dir: Path) -> Iterator[None]:
    """Remove this run's directory when the run is refused before it starts (a user error: bad
    config, data file or checkpoint), so that refused runs leave no empty run directories. The
    error line still reaches the console; a directory holding anything else is kept."""
    try:
        yield
    except Exception as error:
        refused = describe(error) is not None
        if refused and rank_zero_only.rank == 0 and output_dir.is_dir():
            names = {path.name for path in output_dir.iterdir()}
            if all(name in STARTUP_FILES or name.endswith(".log") for name in names):
                shutil.rmtree(output_dir, ignore_errors=True)
        raise


def is_fsdp(strategy: Any) -> bool:
    """Whether a trainer.strategy config (a name or a ``_target_`` mapping) is FSDP."""
    if isinstance(strategy, str):
        return strategy.startswith("fsdp")
    return strategy is not None and "FSDPStrategy" in str(strategy.get("_target_", ""))


def check_strategy(cfg: DictConfig) -> None:
    """Refuse, before anything runs (data included), a combination known to fail: FSDP without a
    GPU, and one that would fail after a whole fit."""
    strategy = cfg.trainer.get("strategy")
    accelerator = str(cfg.trainer.get("accelerator", "auto"))
    if is_fsdp(strategy) and (accelerator == "cpu" or not torch.cuda.is_available()):
        raise ConfigError(
            f"trainer=fsdp needs CUDA GPUs: Lightning 2.6 refuses FSDP on a CPU accelerator, and "
            f"this run has accelerator={accelerator}"
            + ("" if torch.cuda.is_available() else " on a machine without a CUDA GPU")
            + ". On CPUs, distribute with trainer=ddp_cpu"
        )
    loggers = [
        str(entry.get("_target_", "")) for entry in (cfg.get("logger") or {}).values() if entry
    ]
    if strategy == "ddp_spawn" and cfg.get("test", True) and any("CSVLogger" in t for t in loggers):
        raise ConfigError(
            "trainer=ddp_spawn cannot test after fitting with the CSV logger (Lightning 2.6: the "
            "test workers cannot append to the metrics.csv written during fit). Use trainer=ddp "
            "(GPUs) or trainer=ddp_cpu, which relaunch the command instead of spawning; or keep "
            "ddp_spawn with test=false and run sigmoidf1-eval afterwards, or logger=tensorboard."
        )


def config_differences(
    stored: Any, current: Any, prefix: str = "", ignore: set[str] = RESUME_HARMLESS
) -> list[str]:
    """``key: stored -> current`` for each leaf that differs between two resolved config trees."""
    if isinstance(stored, dict) and isinstance(current, dict):
        lines = []
        for key in sorted(set(stored) | set(current)):
            if key in ignore:
                continue
            lines += config_differences(
                stored.get(key), current.get(key), f"{prefix}{key}.", ignore
            )
        return lines
    return [] if stored == current else [f"{prefix[:-1]}: {stored!r} -> {current!r}"]


def check_resume(checkpoint: dict[str, Any], cfg: DictConfig, ckpt_path: str) -> None:
    """Refuse to resume when the data, model or loss config differs from the checkpoint's."""
    stored = checkpoint[HPARAMS_KEY].get("run_config") or {}
    current = scrub(OmegaConf.to_container(cfg, resolve=True))
    differences = [
        line
        for section in RESUME_SECTIONS
        for line in config_differences(stored.get(section), current.get(section), f"{section}.")
    ]
    if differences:
        raise CheckpointError(
            f"{ckpt_path} was trained with another data, model or loss config, so resuming would "
            "change what the weights mean (a changed data seed also re-splits the data: test "
            "examples could leak into training):\n  "
            + "\n  ".join(differences)
            + "\nResume with the original values, or pass resume_check=false to resume anyway."
        )


@one_job_per_launch
@with_requeue_resume  # a requeued SLURM job continues from its run directory's checkpoint
@with_wandb_run  # W&B: offline fallback, resume id, wandb.finish() (utils/wandb_run.py)
def train(cfg: DictConfig) -> dict[str, float]:
    """Fit, then test the best checkpoint; return the validation and test metrics.

    Writes ``<run dir>/test_metrics.json`` and logs the run directory as its last line.
    """
    apply_extras(cfg)
    with discard_run_dir_if_refused(Path(cfg.paths.output_dir)):
        check_strategy(cfg)
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    set_matmul_precision(cfg.get("float32_matmul_precision"))
    output_dir = Path(cfg.paths.output_dir)
    ckpt_path = cfg.get("ckpt_path") if cfg.get("train", True) else None
    with discard_run_dir_if_refused(output_dir):
        if ckpt_path:  # fail early, with a clear message, on a missing, unusable or mismatched file
            resumed = read_checkpoint(ckpt_path, cfg.get("trusted_targets"))
            if cfg.get("resume_check", True):
                check_resume(resumed, cfg, str(ckpt_path))
            resumed = {key: resumed.get(key) for key in ("epoch", "global_step")}
        datamodule = setup_datamodule(cfg.data)
        model = build_model(cfg, datamodule)
        trainer = build_trainer(cfg)
    if ckpt_path and output_dir.resolve() in Path(ckpt_path).resolve().parents:
        keep_csv_metrics(trainer.loggers, resumed.get("global_step") or 0)  # continues in place
    for logger in trainer.loggers:
        logger.log_hyperparams(model.hparams.run_config)

    if cfg.get("train", True):
        if ckpt_path:
            epoch = resumed.get("epoch")
            log.info(
                f"Resuming training from {ckpt_path} (saved at epoch {epoch}, global step "
                f"{resumed.get('global_step')}); this run writes to {output_dir}"
            )
            max_epochs = trainer.max_epochs
            if epoch is not None and max_epochs not in (None, -1) and epoch + 1 >= max_epochs:
                log.warning(
                    f"the checkpoint already holds {epoch + 1} epochs and "
                    f"trainer.max_epochs={max_epochs}: nothing left to train "
                    "(raise trainer.max_epochs to train on)"
                )
        find_learning_rate(trainer, model, datamodule, cfg)
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
        report_early_stop(trainer)
    metrics = scalar_metrics(trainer.callback_metrics, "val/")

    if cfg.get("test", True):
        checkpoint = trainer.checkpoint_callback
        best = checkpoint.best_model_path if checkpoint is not None else ""
        if not best:
            log.warning(
                "No best checkpoint (checkpointing off or fast_dev_run): testing current weights"
            )
        log.info(f"Testing {best or 'the current weights'}")
        trainer.test(
            model, datamodule=datamodule, ckpt_path=best or None, weights_only=True, verbose=False
        )
        # "test": also `test_untuned/*` (the fixed-threshold metrics that ThresholdTuning adds)
        test_metrics = scalar_metrics(trainer.callback_metrics, "test")
        add_baseline(model, datamodule, test_metrics, trainer)
        write_json(test_metrics, output_dir / TEST_METRICS_FILE)
        print_metrics_table(test_metrics, title="Test metrics")
        metrics |= test_metrics

    finish_wandb()  # wandb prints its run summary when it finishes: keep the run directory last
    log.info(f"Run directory: {output_dir}")
    return metrics


@one_job_per_launch
@with_wandb_run
def evaluate(cfg: DictConfig) -> dict[str, float]:
    """Test a checkpoint with the data and model config stored in it; write test_metrics.json."""
    apply_extras(cfg)
    checkpoint = read_checkpoint(cfg.ckpt_path, cfg.get("trusted_targets"))
    if cfg.get("seed") is not None:
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    overrides = cfg.get("data") or {}
    if overrides and cfg.get("data_check", True):
        stored = OmegaConf.to_container(trained_config(checkpoint).data, resolve=True)
        changed = config_differences(
            stored,
            OmegaConf.to_container(OmegaConf.merge(stored, overrides), resolve=True),
            "data.",
        )
        if changed:
            raise CheckpointError(
                f"these data overrides change the data {cfg.ckpt_path} was trained and split "
                "with, so its test split would no longer be held out:\n  "
                + "\n  ".join(changed)
                + "\nDrop them, or pass data_check=false to evaluate on that data anyway."
            )
    datamodule = datamodule_from(checkpoint, overrides)
    model = classifier_from(checkpoint)
    del checkpoint
    trainer = build_trainer(cfg)
    for logger in trainer.loggers:  # this job's config, and the training config of the checkpoint
        logger.log_hyperparams(
            scrub(
                {
                    **OmegaConf.to_container(cfg, resolve=True),
                    "trained_with": model.hparams.run_config,
                }
            )
        )
    trainer.test(model, datamodule=datamodule, verbose=False)
    metrics = scalar_metrics(trainer.callback_metrics, "test/")
    add_baseline(model, datamodule, metrics, trainer)
    output_dir = Path(cfg.paths.output_dir)
    write_json(metrics, output_dir / TEST_METRICS_FILE)
    print_metrics_table(metrics, title=f"Test metrics of {cfg.ckpt_path}")
    finish_wandb()
    log.info(f"Run directory: {output_dir}")
    return metrics
