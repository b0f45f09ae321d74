"""Lightning callbacks of the template: threshold tuning."""

from sigmoidf1.callbacks.thresholds import ThresholdTuning, best_f1_thresholds

__all__ = ["ThresholdTuning", "best_f1_thresholds"]
