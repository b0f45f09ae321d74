"""What this process knows about its own interruption, shared by the callback that handles it and
the error reporting that tells the user (which must not import the callbacks layer)."""

from __future__ import annotations

_state: dict[str, str | None] = {"signal": None, "checkpoint": None, "requeue": None}


def record_signal(name: str) -> None:
    """Remember that ``name`` (e.g. ``"SIGINT"``) asked this process to stop."""
    _state["signal"] = name


def record_checkpoint(path: str) -> None:
    """Remember the resumable checkpoint written on the way out."""
    _state["checkpoint"] = path


def record_requeue(job: str) -> None:
    """Remember that SLURM job ``job`` is requeued on the way out (it continues by itself)."""
    _state["requeue"] = job


def requeued_job() -> str | None:
    """The SLURM job requeued by this process's stop, if any."""
    return _state["requeue"]


def last_signal() -> str | None:
    """``"SIGINT"`` after a graceful Ctrl-C, SLURM's requeue signal (``"SIGUSR1"``) after a stop
    for requeueing, else ``None`` (SIGTERM is Lightning's own)."""
    return _state["signal"]


def saved_checkpoint() -> str | None:
    """The interrupt checkpoint written by this process, if any."""
    return _state["checkpoint"]
