"""Instantiate the callback and logger groups: dicts of ``{name: {_target_: ...}}``."""

from __future__ import annotations

from typing import Any

import hydra
from omegaconf import DictConfig


def instantiate_dict(group: DictConfig | None) -> list[Any]:
    """Instantiate every entry of ``group`` that has a ``_target_``; skip null entries.

    Raises ``TypeError`` naming the entry when a value is neither null nor a config with a target.
    """
    if not group:
        return []
    objects = []
    for name, entry in group.items():
        if entry is None:
            continue
        if not isinstance(entry, DictConfig) or "_target_" not in entry:
            raise TypeError(f"config entry '{name}' needs a `_target_` (or null to disable it)")
        objects.append(hydra.utils.instantiate(entry))
    return objects
