"""Lightning callbacks: the best value of the monitored metric (``best``), exact resume (random
states, best-checkpoint record), the interrupt checkpoint, threshold tuning (``thresholds``), the
per-label test report (``report``)."""

from sigmoidf1.callbacks.best import BestMetric
from sigmoidf1.callbacks.interrupt import InterruptCheckpoint
from sigmoidf1.callbacks.resume import ModelCheckpoint, RestoreRandomState

__all__ = ["BestMetric", "InterruptCheckpoint", "ModelCheckpoint", "RestoreRandomState"]
