"""What this process knows about its own interruption, shared by the callback that handles it and
the error reporting that tells the user (which must not import the callbacks layer)."""

from __future__ import annotations

_state: dict[str, str | None] = {"signal": None, "checkpoint": None}


def record_signal(name: str) -> None:
    """Remember that ``name`` (e.g. ``"SIGINT"``) asked this process to stop."""
    _state["signal"] = name


def record_checkpoint(path: str) -> None:
    """Remember the resumable checkpoint written on the way out."""
    _state["checkpoint"] = path


def last_signal() -> str | None:
    """``"SIGINT"`` after a graceful Ctrl-C, else ``None`` (SIGTERM is Lightning's own)."""
    return _state["signal"]


def saved_checkpoint() -> str | None:
    """The interrupt checkpoint written by this process, if any."""
    return _state["checkpoint"]
