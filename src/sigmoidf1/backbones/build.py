"""Build a backbone from a partial config and the DataModule's ``backbone_inputs``."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from torch import nn


def _accepted_keywords(factory: Callable[..., Any]) -> set[str] | None:
    """Keyword names ``factory`` takes; ``None`` when it takes ``**kwargs`` (accepts any)."""
    target = factory.func if isinstance(factory, functools.partial) else factory
    parameters = inspect.signature(target).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {p.name for p in parameters}


def build_backbone(factory: Callable[..., nn.Module], inputs: dict[str, Any]) -> nn.Module:
    """Call ``factory`` with the entries of ``inputs`` that it accepts (config values win).

    Raises ``TypeError`` when the result has no integer ``out_features`` attribute.
    """
    accepted = _accepted_keywords(factory)
    preset = factory.keywords if isinstance(factory, functools.partial) else {}
    kwargs = {
        key: value
        for key, value in inputs.items()
        if (accepted is None or key in accepted) and key not in preset
    }
    backbone = factory(**kwargs)
    if not isinstance(getattr(backbone, "out_features", None), int):
        raise TypeError(
            f"{type(backbone).__name__} must expose an integer `out_features` (its feature size)"
        )
    return backbone
