"""Lightning callbacks: the per-label test report, and the W&B run id stored in checkpoints."""
