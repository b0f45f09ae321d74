"""Test-only pieces that the CLI subprocesses import (the tests put the repository on the path)."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L


class WaitForSignalAtStep(L.Callback):
    """At global step ``step``, write ``marker`` and wait (up to ``timeout`` s) for SIGTERM/SIGINT.

    Makes the interruption tests deterministic: the signal always arrives in the middle of an
    epoch, at a known step, however slow the machine is.
    """

    def __init__(self, step: int, marker: str, timeout: float = 120.0) -> None:
        self.step = step
        self.marker = Path(marker)
        self.timeout = timeout

    def on_train_batch_end(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step != self.step:
            return
        self.marker.write_text(str(trainer.global_step))
        deadline = time.monotonic() + self.timeout
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)  # signal handlers run in the main thread between these sleeps


class CrashAtStep(L.Callback):
    """Raise ``RuntimeError`` in the middle of the training step at global step ``step`` (after the
    forward pass, before the backward pass): a crash that leaves the epoch half done."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_before_backward(self, trainer: L.Trainer, *args, **kwargs) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError(f"simulated crash at step {self.step}")
