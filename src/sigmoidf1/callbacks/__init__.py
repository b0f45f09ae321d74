"""Lightning callbacks: threshold tuning (``thresholds``), the per-label test report (``report``),
and the W&B run id stored in checkpoints."""
