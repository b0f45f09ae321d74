"""Helpers that know nothing of the layers above them (they never import callbacks, the module, the
pipeline or the entry points): errors, atomic files, collectives across processes, the DDP
relaunch, config printing and secret masking, rank-zero logging, results, the W&B run."""
