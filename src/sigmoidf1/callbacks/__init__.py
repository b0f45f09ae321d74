"""Lightning callbacks of the template."""

from sigmoidf1.callbacks.interrupt import InterruptCheckpoint
from sigmoidf1.callbacks.resume import ModelCheckpoint, RestoreRandomState

__all__ = ["InterruptCheckpoint", "ModelCheckpoint", "RestoreRandomState"]
