"""Build a backbone from a partial config and the DataModule's ``backbone_inputs``."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

from torch import nn

from sigmoidf1.keywords import accepted_keywords, missing_keywords


def _target_name(factory: Callable[..., Any]) -> str:
    target = factory.func if isinstance(factory, functools.partial) else factory
    return getattr(target, "__name__", repr(target))


def build_backbone(factory: Callable[..., nn.Module], inputs: dict[str, Any]) -> nn.Module:
    """Call ``factory`` with the entries of ``inputs`` that it accepts (config values win).

    Raises ``TypeError`` when a required argument is missing (naming it and what the data provides,
    e.g. an image backbone on text data) or the result has no integer ``out_features`` attribute.
    """
    accepted = accepted_keywords(factory)
    preset = factory.keywords if isinstance(factory, functools.partial) else {}
    kwargs = {
        key: value
        for key, value in inputs.items()
        if (accepted is None or key in accepted) and key not in preset
    }
    missing = missing_keywords(factory, kwargs)
    if missing:
        raise TypeError(
            f"backbone {_target_name(factory)} needs {', '.join(missing)}, which neither its "
            f"config nor the data provides (the data provides {', '.join(inputs) or 'nothing'}): "
            "is this backbone meant for this kind of data?"
        )
    backbone = factory(**kwargs)
    if not isinstance(getattr(backbone, "out_features", None), int):
        raise TypeError(
            f"{type(backbone).__name__} must expose an integer `out_features` (its feature size)"
        )
    return backbone
