"""Lightning callbacks: exact resume (random states, best-checkpoint record), the interrupt
checkpoint, threshold tuning (``thresholds``), the per-label test report (``report``), and the W&B
run id stored in checkpoints."""

from sigmoidf1.callbacks.interrupt import InterruptCheckpoint
from sigmoidf1.callbacks.resume import ModelCheckpoint, RestoreRandomState

__all__ = ["InterruptCheckpoint", "ModelCheckpoint", "RestoreRandomState"]
