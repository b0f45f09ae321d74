"""Config side jobs run before training: warnings, printing and saving the resolved config."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import rich
import rich.console
import rich.syntax
import rich.tree
from lightning.pytorch.utilities import rank_zero_only
from omegaconf import DictConfig, OmegaConf

from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.secrets import scrub, scrub_run_files, secret_keys_in

log = get_logger(__name__)

# Printed first, in this order; other top-level keys follow.
PRINT_ORDER = ("data", "model", "loss", "callbacks", "logger", "trainer", "paths", "extras")

# Messages that are noise for the in-memory datasets of this template.
_HARMLESS_WARNINGS = (
    r".*does not have many workers.*",
    r".*The number of training batches.*is smaller than the logging interval.*",
    r".*Checkpoint directory.*exists and is not empty.*",
    # the CSV logger writes metrics.csv and hparams.yaml into the fresh run directory, which Hydra
    # has already filled (.hydra/, the log): nothing is deleted, whatever the warning says
    r".*Experiment logs directory.*exists and is not empty.*",
    r".*isinstance\(treespec, LeafSpec\).*is deprecated.*",
    # Lightning's hint on every machine where SLURM is installed; SLURM jobs of this template are
    # started with srun (README, "Scaling out"), other runs are meant to run without it
    r".*The `srun` command is available on your system but is not used.*",
    # average precision of a label without a positive in the evaluated split (rare labels of
    # data=reuters): torchmetrics scores it, as documented, and says so at every epoch
    r".*No positive samples found in target, recall is undefined.*",
)

# Lightning's info lines that tell a run's reader nothing: an advertisement for a cloud service
# (2.6, at every fit), the absence of TPUs, and the checkpoint path that the pipeline's own
# "Testing <path>" line already names (Lightning adds two lines with it).
_NOISE_PREFIXES = (
    "💡 Tip:",
    "TPU available: False",
    "Restoring states from the checkpoint path at",
    "Loaded model weights from the checkpoint at",
)


class _DropNoise(logging.Filter):
    """Drops the records of Lightning's rank-zero logger that start with ``_NOISE_PREFIXES``."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(_NOISE_PREFIXES)


def route_lightning_logs_through_root() -> None:
    """Drop Lightning's own console handlers so its messages appear once, in Hydra's format, and
    reach the run's log file. Lightning imported before logging was configured (a script or
    notebook that imported it first) has a handler of its own and does not propagate: both
    undone here."""
    for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
        logger = logging.getLogger(name)
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
        logger.propagate = True
    rank_zero_logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    if not any(isinstance(f, _DropNoise) for f in rank_zero_logger.filters):
        rank_zero_logger.addFilter(_DropNoise())


def quiet_console_on_other_ranks() -> None:
    """On the processes of rank > 0 (DDP), the console shows warnings and errors only: rank 0
    reports the run, and every other rank would repeat Lightning's per-process lines
    ("Initializing distributed: GLOBAL_RANK: 1 ..."). Log files keep every line."""
    if rank_zero_only.rank == 0:
        return
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and not isinstance(
            handler, logging.FileHandler
        ):
            handler.setLevel(max(handler.level, logging.WARNING))


_NEVER_WRAP = 10_000  # columns: wide enough for any config value


def apply_extras(cfg: DictConfig) -> None:
    """Apply ``cfg.extras``: silence harmless warnings, print and save the config tree.

    Also masks secrets in the config files Hydra wrote to the run directory (see
    ``protect_secrets``).
    """
    route_lightning_logs_through_root()
    quiet_console_on_other_ranks()
    protect_secrets(cfg)
    extras = cfg.get("extras") or {}
    if extras.get("ignore_warnings"):
        for pattern in _HARMLESS_WARNINGS:
            warnings.filterwarnings("ignore", message=pattern)
    if extras.get("print_config"):
        print_config_tree(cfg, save_to=Path(cfg.paths.output_dir) / "config_tree.log")


@rank_zero_only
def print_config_tree(cfg: DictConfig, save_to: Path | None = None) -> None:
    """Print the resolved config as a rich tree (rank zero) and optionally save it as text."""
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in PRINT_ORDER if k in cfg] + [k for k in cfg if k not in PRINT_ORDER]
    resolved = scrub(OmegaConf.to_container(cfg, resolve=True))  # secrets masked
    for key in keys:
        branch = tree.add(key, style="bold", guide_style="dim")
        value = resolved[key]
        text = OmegaConf.to_yaml(OmegaConf.create(value)) if isinstance(value, dict) else str(value)
        branch.add(rich.syntax.Syntax(text, "yaml", theme="ansi_dark"))
    console = rich.console.Console()
    if not console.is_terminal:  # pipes, SLURM, nohup: rich would cut lines at 80 columns
        console = rich.console.Console(width=_NEVER_WRAP)
    console.print(tree)
    if save_to is not None:
        save_to.parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as handle:
            rich.console.Console(file=handle, width=_NEVER_WRAP, color_system=None).print(tree)


@rank_zero_only
def protect_secrets(cfg: DictConfig) -> None:
    """Mask secrets in ``<run dir>/.hydra/*.yaml`` and warn about secret-named config keys.

    Checkpoints, logger hyperparameters and the printed config are masked where they are written
    (``sigmoidf1.utils.secrets.scrub``); this handles the files Hydra wrote before the run started.
    """
    resolved = OmegaConf.to_container(cfg, resolve=True)
    for name in secret_keys_in(resolved):
        log.warning(
            f"config key '{name}' looks like a secret: it is masked (***) in everything "
            "the run writes; prefer environment variables (e.g. WANDB_API_KEY)"
        )
    output_dir = cfg.get("paths", {}).get("output_dir")
    if output_dir:
        scrub_run_files(output_dir, resolved, extra_files=_multirun_files())


def _multirun_files() -> tuple[Path, ...]:
    """``<sweep dir>/multirun.yaml`` in a multirun (it lists the overrides of every job)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized() or HydraConfig.get().mode != RunMode.MULTIRUN:
        return ()
    return (Path(HydraConfig.get().sweep.dir) / "multirun.yaml",)
