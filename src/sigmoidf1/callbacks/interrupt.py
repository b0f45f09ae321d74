"""Leave a resumable checkpoint when training is stopped by SIGTERM, Ctrl-C or a crash.

Lightning handles SIGTERM by finishing the current batch and raising ``SIGTERMException``;
``InterruptCheckpoint`` then saves ``<dirpath>/interrupted.ckpt`` (what Lightning's
``OnExceptionCheckpoint`` does, without its side effect of making every ``fit`` look for a
checkpoint
to resume from when none is given), from which ``sigmoidf1-train ckpt_path=...`` resumes exactly
(the data
loader skips the batches already seen, the random states are restored). Ctrl-C gets the same
treatment: the first press stops after the current batch, a second press quits at once without a
checkpoint (a step cut in the middle is not a state worth resuming).

**SLURM.** In a SLURM job, ``SIGUSR1`` (what ``#SBATCH --signal=USR1@90`` sends 90 s before the time
limit) takes the same path, and the job is requeued on the way out (``scontrol requeue``, after the
loggers have finished): the restarted job, same id and run directory, continues from the checkpoint
by itself (``sigmoidf1.utils.slurm``). The stop is agreed by every process at the end of a training
batch (one small all-reduce per batch, in SLURM jobs only), so that all of them save the same step;
Lightning's own requeue handler, which saves from inside the signal handler in the middle of a
step, is not installed (a handler is already there). A signal during the final test is only noted:
the test goes on.

No checkpoint is written when the error is a diverged training (``FloatingPointError``) or the
weights are not finite, nor when training had not started (a bad config or data file), nor after
an error in a distributed run (saving is collective: the other processes would never join; SIGTERM
is broadcast to every process by Lightning, so it still saves).
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from sigmoidf1.utils.interruption import (
    last_signal,
    record_checkpoint,
    record_requeue,
    record_signal,
)
from sigmoidf1.utils.logging import get_logger
from sigmoidf1.utils.slurm import in_slurm_job, job_id, requeue_at_exit

log = get_logger(__name__)


def parameters_are_finite(module: torch.nn.Module) -> bool:
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


class InterruptCheckpoint(L.Callback):
    """Save ``<dirpath>/<filename>.ckpt`` when fitting stops on an exception (SIGTERM, Ctrl-C,
    a crash).

    The file is removed when a later fit in the same directory completes (it would be stale).

    Args:
        dirpath: the run's checkpoint directory.
        filename: file name without ``.ckpt``.
        graceful_ctrl_c: make the first Ctrl-C stop after the current batch (like SIGTERM).
        requeue_signal: in a SLURM job, the signal that stops training, saves and requeues the
            job (``"SIGUSR1"``, SLURM's ``--signal`` default); ``None`` leaves it to Lightning.
    """

    def __init__(
        self,
        dirpath: str,
        filename: str = "interrupted",
        graceful_ctrl_c: bool = True,
        requeue_signal: str | None = "SIGUSR1",
    ) -> None:
        if not filename:
            raise ValueError("InterruptCheckpoint needs a file name")
        if requeue_signal is not None and not isinstance(
            getattr(signal, str(requeue_signal), None), signal.Signals
        ):
            raise ValueError(
                f"requeue_signal must name a signal such as SIGUSR1, got {requeue_signal!r}"
            )
        self.dirpath = str(dirpath)
        self.filename = filename
        self.graceful_ctrl_c = graceful_ctrl_c
        self.requeue_signal = requeue_signal
        self._previous_handler: Any = None
        self._previous_requeue_handler: Any = None
        self._requeue_installed = False
        self._requeue_asked = False  # set by the signal handler, acted upon at a batch end
        self._stage = ""  # the trainer stage the handler was installed for

    @property
    def ckpt_path(self) -> str:
        return str(Path(self.dirpath) / f"{self.filename}.ckpt")

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # before Lightning registers its signal handlers, which then leave SIGUSR1 to this one
        if (
            self.requeue_signal
            and not self._requeue_installed
            and threading.current_thread() is threading.main_thread()
            and in_slurm_job()
        ):
            self._requeue_asked = False
            self._stage = stage
            self._previous_requeue_handler = signal.signal(
                getattr(signal, self.requeue_signal), self._on_requeue_signal
            )
            self._requeue_installed = True

    def teardown(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._restore_requeue_signal()
        if stage == "fit" and trainer.is_global_zero:  # reached only when fit ended normally
            Path(self.ckpt_path).unlink(missing_ok=True)

    # --- SLURM's requeue signal -----------------------------------------------------------------
    def _on_requeue_signal(self, signum: int, frame: Any) -> None:
        # no collective here: the processes agree at the next batch end (on_train_batch_end)
        if self._stage != "fit":
            log.warning(
                f"{self.requeue_signal} (SLURM job {job_id()}) during {self._stage}: not acted "
                "upon (only training is stopped and requeued)"
            )
        elif not self._requeue_asked:
            self._requeue_asked = True
            log.warning(
                f"{self.requeue_signal} (SLURM job {job_id()}): stopping after the current batch, "
                "saving a checkpoint and requeueing the job"
            )

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any, **kwargs: Any) -> None:
        if not self._requeue_installed:
            return
        stop = self._requeue_asked
        if trainer.world_size > 1:  # any process signalled: all stop at this same batch
            stop = trainer.strategy.reduce_boolean_decision(stop, all=False)
        if stop:
            self._requeue_asked = True
            record_signal(str(self.requeue_signal))
            # Lightning's SIGTERM path from here: the loop raises SIGTERMException once this batch
            # is counted as done (what an exact resume needs), and on_exception below saves. The
            # flag is set directly: Lightning's SIGTERM handler would broadcast from inside the
            # signal handler, possibly in the middle of another collective.
            trainer._signal_connector.received_sigterm = True

    def _restore_requeue_signal(self) -> None:
        if self._requeue_installed and threading.current_thread() is threading.main_thread():
            signal.signal(getattr(signal, str(self.requeue_signal)), self._previous_requeue_handler)
        self._requeue_installed = False
        self._previous_requeue_handler = None

    # --- Ctrl-C ---------------------------------------------------------------------------------
    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning has registered its SIGTERM handler by now (and restores all handlers at
        # teardown)
        if self.graceful_ctrl_c and threading.current_thread() is threading.main_thread():
            self._previous_handler = signal.signal(signal.SIGINT, self._on_ctrl_c)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._restore_ctrl_c()

    def _restore_ctrl_c(self) -> None:
        if (
            self._previous_handler is not None
            and threading.current_thread() is threading.main_thread()
        ):
            signal.signal(signal.SIGINT, self._previous_handler)
        self._previous_handler = None

    def _on_ctrl_c(self, signum: int, frame: Any) -> None:
        if last_signal() == "SIGINT":
            self._restore_ctrl_c()
            raise KeyboardInterrupt
        record_signal("SIGINT")
        log.warning(
            "Ctrl-C: stopping after the current batch and saving a resumable checkpoint "
            "(press Ctrl-C again to quit at once, without a checkpoint)"
        )
        # hand over to Lightning's SIGTERM path: stop at the end of the batch, then raise
        signal.raise_signal(signal.SIGTERM)

    # --- the checkpoint -------------------------------------------------------------------------
    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        self._restore_ctrl_c()
        self._restore_requeue_signal()
        if trainer.state.fn != "fit" or trainer.global_step == 0:
            return  # nothing trained yet (e.g. a bad config or data file): nothing to resume
        if isinstance(exception, KeyboardInterrupt):
            log.warning(
                "Quit at once: no checkpoint written (the last one in the checkpoint "
                "directory, if any, is the most recent resumable state)"
            )
            return
        if isinstance(exception, FloatingPointError) or not parameters_are_finite(pl_module):
            log.warning(
                "Training diverged: no checkpoint written (it would hold non-finite values)"
            )
            return
        if trainer.world_size > 1 and not isinstance(exception, SIGTERMException):
            # saving is collective; after an error on one process the others never join
            log.warning(
                "No interrupt checkpoint: the error happened on one process of a distributed "
                "run (resume from the last checkpoint)"
            )
            return
        try:
            trainer.save_checkpoint(self.ckpt_path, weights_only=False)
        except Exception as error:  # never hide the original exception behind this one
            log.warning(f"Could not save the interrupt checkpoint {self.ckpt_path}: {error}")
            return
        record_checkpoint(self.ckpt_path)
        epoch = trainer.current_epoch
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.completed
        reason = type(exception).__name__
        if reason == "SIGTERMException":
            reason = last_signal() or "SIGTERM"
        stopped = (
            f"Stopped by {reason} in epoch {epoch} after {batches} batch(es) (global step "
            f"{trainer.global_step}). Saved a resumable checkpoint: {self.ckpt_path}"
        )
        if self._requeue_asked and isinstance(exception, SIGTERMException) and job_id():
            if trainer.is_global_zero:
                mark_preempting(trainer)
                requeue_at_exit(str(job_id()))  # after the loggers and W&B have finished
            record_requeue(str(job_id()))
            log.warning(f"{stopped}\nThe job is requeued and continues from it when it restarts")
            return
        log.warning(
            f"{stopped}\n"
            f"Resume with: sigmoidf1-train ckpt_path={self.ckpt_path} (and the same overrides)"
        )


def mark_preempting(trainer: L.Trainer) -> None:
    """Tell W&B that its run stops to be continued (shown as preempted rather than failed)."""
    for logger in trainer.loggers:
        if type(logger).__name__ == "WandbLogger":
            run = getattr(logger, "_experiment", None)
            if run is not None and hasattr(run, "mark_preempting"):
                run.mark_preempting()
