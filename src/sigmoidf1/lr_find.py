"""``tuner.lr_find=true``: Lightning's learning-rate range test before fitting (see README,
"Learning-rate finder and weight averaging")."""

from __future__ import annotations

from pathlib import Path

import lightning as L
from omegaconf import DictConfig

from sigmoidf1.module import MultilabelClassifier
from sigmoidf1.utils.errors import ConfigError
from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.results import write_json

log = get_logger(__name__)


def find_learning_rate(
    trainer: L.Trainer,
    model: MultilabelClassifier,
    datamodule: L.LightningDataModule,
    cfg: DictConfig,
) -> float | None:
    """``tuner.lr_find=true``: Lightning's learning-rate range test; its suggestion replaces
    ``model.hparams.optimizer["lr"]`` (the optimizer of the fit, stored in checkpoints). Writes
    ``lr_find.png`` and ``lr_find.json`` (the curve and the suggestion) into the run directory."""
    tuner_cfg = cfg.get("tuner") or {}
    if not tuner_cfg.get("lr_find", False):
        return None
    if trainer.world_size > 1:
        raise ConfigError(
            f"tuner.lr_find=true runs on one process only, not under trainer.strategy with "
            f"{trainer.world_size} processes (untested with DDP here, and under ddp_spawn the "
            "result stays in the workers). Run the finder once with trainer=default, then pass "
            "its suggestion: model.optimizer.lr=<lr>."
        )
    if cfg.get("ckpt_path"):
        log.info("Resuming: no learning-rate finder (the checkpoint's optimizer keeps its rate)")
        return None
    from lightning.pytorch.tuner import Tuner
    from torchmetrics import Metric

    finder = Tuner(trainer).lr_find(
        model,
        datamodule=datamodule,
        min_lr=tuner_cfg.get("min_lr", 1e-6),
        max_lr=tuner_cfg.get("max_lr", 1.0),
        num_training=tuner_cfg.get("num_training", 100),
        mode=tuner_cfg.get("mode", "exponential"),
        early_stop_threshold=tuner_cfg.get("early_stop_threshold", 4.0),
        update_attr=False,  # the rate lives in hparams.optimizer, not in an `lr` attribute
    )
    if finder is None:  # fast_dev_run
        return None
    for metric in model.modules():  # the range test's steps must not count in epoch 0's metrics
        if isinstance(metric, Metric):
            metric.reset()
    suggestion = finder.suggestion()
    output_dir = Path(cfg.paths.output_dir)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = finder.plot(suggest=True)
    figure.savefig(output_dir / "lr_find.png", dpi=120, bbox_inches="tight")
    plt.close(figure)
    curve = {key: [float(x) for x in finder.results[key]] for key in ("lr", "loss")}
    write_json({"suggested_lr": suggestion, **curve}, output_dir / "lr_find.json")
    if suggestion is None:
        log.warning(
            f"learning-rate finder: no suggestion (too few steps); keeping lr="
            f"{model.hparams.optimizer.get('lr')} (raise tuner.num_training)"
        )
        return None
    previous = model.hparams.optimizer.get("lr")
    model.hparams.optimizer["lr"] = float(suggestion)
    for logger in trainer.loggers:
        logger.log_hyperparams({"lr_find/suggested_lr": float(suggestion)})
    log.info(
        f"Learning-rate finder suggests lr={suggestion:.4g} (configured {previous}): fitting with "
        f"it; curve in {output_dir / 'lr_find.png'}"
    )
    return float(suggestion)
