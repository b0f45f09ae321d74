"""The life of a W&B run around one job: offline fallback, resume, run id in checkpoints, finish.

``with_wandb_run`` wraps ``pipeline.train`` / ``pipeline.evaluate``. When the config has a
``WandbLogger`` it, before anything starts:

1. falls back to offline mode when no credentials are found (no ``WANDB_API_KEY``, no identity
   token, no key in ``~/.netrc`` or the W&B settings) and neither ``WANDB_MODE`` nor the logger asks
   for a mode: it sets ``WANDB_MODE=offline`` (inherited by DDP worker processes) and says in one
   line how to upload later with ``wandb sync``. It never reaches wandb's interactive login prompt;
2. in a multirun, puts runs whose ``group`` is unset into one group named after the sweep
   directory (for an Optuna search: the study name), so that a sweep's trials, from any worker,
   show together;
3. on ``ckpt_path=...``, reads the run id that ``RunIdInCheckpoint`` stored in the checkpoint and
   passes it as the logger's ``id`` (with ``resume="allow"``), so that the resumed training
   continues the same W&B run;

and afterwards calls ``wandb.finish()`` (also after an error, marking the run failed), so that the
next job of a multirun opens its own run instead of reusing this one.

wandb is imported only inside these functions, and only when a W&B logger is configured.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import lightning as L
from omegaconf import DictConfig, open_dict

from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)

CHECKPOINT_KEY = "wandb"  # checkpoint["wandb"] = {"run_id": ..., "project": ..., "entity": ...}
_OFFLINE_MODES = ("offline", "dryrun")
# True once this process has switched W&B offline itself: later multirun jobs re-check credentials
# instead of taking the WANDB_MODE we set for a user's choice.
_mode_set_here = False

F = TypeVar("F", bound=Callable[..., Any])


def wandb_logger_configs(cfg: DictConfig) -> list[DictConfig]:
    """The entries of ``cfg.logger`` that instantiate a ``WandbLogger``."""
    loggers = cfg.get("logger") or {}
    return [
        entry
        for entry in loggers.values()
        if isinstance(entry, DictConfig) and str(entry.get("_target_", "")).endswith("WandbLogger")
    ]


def has_wandb_credentials() -> bool:
    """Whether wandb would find credentials without prompting; reads nothing over the network."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    try:
        import wandb
    except ImportError as error:
        raise ImportError(
            "logger=wandb needs the wandb package: pip install 'sigmoidf1[wandb]'"
        ) from error
    # wandb >= 0.22: wandb's own settings (files + environment) and the .netrc entry of its host
    try:
        from wandb.sdk import wandb_setup
        from wandb.sdk.lib import wbauth

        settings = wandb_setup.singleton().settings
        return bool(settings.api_key or wbauth.read_netrc_auth(host=settings.base_url))
    except (ImportError, AttributeError):  # older wandb: env, .netrc and settings, looked up here
        return bool(wandb.api.api_key)


def _fall_back_to_offline(cfg: DictConfig) -> None:
    global _mode_set_here
    entries = wandb_logger_configs(cfg)
    user_mode = os.environ.get("WANDB_MODE") if not _mode_set_here else None
    asks_for_mode = user_mode or any(e.get("offline") or e.get("mode") for e in entries)
    if asks_for_mode or has_wandb_credentials():
        return
    os.environ["WANDB_MODE"] = "offline"
    _mode_set_here = True
    import wandb

    wandb.teardown()  # drop the settings cached by the check above: wandb.init re-reads WANDB_MODE
    for entry in entries:
        save_dir = Path(entry.get("save_dir") or entry.get("dir") or ".").resolve()
        log.warning(
            "W&B: no API key found (WANDB_API_KEY, ~/.netrc, `wandb login`) and WANDB_MODE is "
            "unset, so this run is logged offline; upload it later with: "
            f"wandb sync {save_dir}/wandb/offline-run-*"
        )


def run_id_from_checkpoint(path: str | Path) -> str | None:
    """The W&B run id stored in a checkpoint by ``RunIdInCheckpoint``, or None.

    Safe loading (``weights_only=True``); an unreadable file yields None here, and Lightning reports
    it when it loads the checkpoint for real.
    """
    import torch

    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # missing, truncated or foreign files are reported by the resume itself
        return None
    stored = checkpoint.get(CHECKPOINT_KEY) if isinstance(checkpoint, dict) else None
    run_id = stored.get("run_id") if isinstance(stored, dict) else None
    return run_id if isinstance(run_id, str) and run_id else None


def _resume_run(cfg: DictConfig) -> None:
    ckpt_path = cfg.get("ckpt_path")
    if not ckpt_path or not cfg.get("train"):  # eval has no `train` key: its runs stay separate
        return
    entries = [e for e in wandb_logger_configs(cfg) if not e.get("id") and not e.get("version")]
    run_id = run_id_from_checkpoint(ckpt_path) if entries else None
    if run_id is None:
        return
    for entry in entries:
        with open_dict(entry):
            entry.id = run_id
            entry.resume = "allow"
    log.info(f"W&B: continuing run {run_id} (stored in {ckpt_path})")


def sweep_group() -> str | None:
    """The name of this multirun's sweep directory, or None outside a multirun."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
            return None
        return Path(str(HydraConfig.get().sweep.dir)).name
    except Exception:  # no Hydra context (called from Python), or an unresolvable sweep dir
        return None


def _group_sweep_runs(cfg: DictConfig) -> None:
    group = sweep_group()
    for entry in wandb_logger_configs(cfg) if group else []:
        if not entry.get("group"):
            with open_dict(entry):
                entry.group = group


def prepare_wandb(cfg: DictConfig) -> None:
    """Offline fallback, sweep group and resume id, applied to ``cfg.logger`` before any logger
    exists."""
    if wandb_logger_configs(cfg):
        _fall_back_to_offline(cfg)
        _group_sweep_runs(cfg)
        _resume_run(cfg)


def finish_wandb(exit_code: int = 0) -> None:
    """Finish the active W&B run, if this process has one (rank zero); a no-op otherwise."""
    wandb = sys.modules.get("wandb")  # never import wandb just to find out there is no run
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish(exit_code=exit_code)


def with_wandb_run(job: F) -> F:
    """Decorate ``job(cfg)``: ``prepare_wandb(cfg)`` before, ``finish_wandb()`` after (see top).

    The job may finish the run itself earlier (wandb prints a summary then); finishing twice is a
    no-op. An exception finishes the run with exit code 1 (shown as failed) and propagates.
    """

    @functools.wraps(job)
    def wrapper(cfg: DictConfig, *args: Any, **kwargs: Any) -> Any:
        prepare_wandb(cfg)
        try:
            result = job(cfg, *args, **kwargs)
        except BaseException:
            finish_wandb(exit_code=1)
            raise
        finish_wandb()
        return result

    return wrapper  # type: ignore[return-value]


class RunIdInCheckpoint(L.Callback):
    """Store the W&B run id in every checkpoint as plain data (``checkpoint["wandb"]``), so that
    ``ckpt_path=...`` resumes the same run (see ``prepare_wandb``)."""

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    def on_save_checkpoint(
        self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict[str, Any]
    ) -> None:
        if not trainer.is_global_zero:  # only rank zero has the run (and writes the file)
            return
        run = self.logger.experiment
        run_id = getattr(run, "id", None)
        if isinstance(run_id, str) and run_id:
            checkpoint[CHECKPOINT_KEY] = {
                "run_id": run_id,
                "project": str(getattr(run, "project", "")),
                "entity": str(getattr(run, "entity", "") or ""),
            }


class SummarizeBest(L.Callback):
    """Make the W&B run summary hold the best value of ``metric`` (``define_metric(summary=...)``),
    not the last one, so that the runs table and sweeps compare runs by their best epoch."""

    def __init__(self, logger: Any, metric: str, mode: str) -> None:
        self.logger, self.metric, self.mode = logger, metric, mode

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.is_global_zero:
            self.logger.experiment.define_metric(self.metric, summary=self.mode)


def wandb_callbacks(
    loggers: list[Any], metric: str | None = None, mode: str = "max"
) -> list[L.Callback]:
    """Callbacks that the W&B loggers among ``loggers`` need (added by the pipeline)."""
    from lightning.pytorch.loggers import WandbLogger

    callbacks: list[L.Callback] = []
    for logger in (logger for logger in loggers if isinstance(logger, WandbLogger)):
        callbacks.append(RunIdInCheckpoint(logger))
        if metric:
            callbacks.append(SummarizeBest(logger, metric, mode))
    return callbacks
