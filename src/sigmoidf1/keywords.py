"""Which keyword arguments a callable takes: the one reading of ``inspect.signature`` that the loss
registry (``get_loss``) and the backbone builder (``build_backbone``) check their arguments with.

``functools.partial`` objects (what Hydra's ``_partial_: true`` builds) are read as Python reads
them: their preset keywords become optional.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterable
from typing import Any

_BY_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


def _parameters(factory: Callable[..., Any]) -> list[inspect.Parameter] | None:
    try:
        return list(inspect.signature(factory).parameters.values())
    except (TypeError, ValueError):  # some builtins have no signature
        return None


def accepted_keywords(factory: Callable[..., Any]) -> list[str] | None:
    """The names ``factory`` takes by keyword, in order; ``None`` when it takes ``**kwargs`` (or
    its signature cannot be read): then it accepts any."""
    parameters = _parameters(factory)
    if parameters is None or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return [p.name for p in parameters if p.kind in _BY_KEYWORD]


def missing_keywords(factory: Callable[..., Any], given: Iterable[str]) -> list[str]:
    """The parameters of ``factory`` without a default that are not in ``given``, in order."""
    given = set(given)
    return [
        p.name
        for p in _parameters(factory) or []
        if p.kind in _BY_KEYWORD and p.default is inspect.Parameter.empty and p.name not in given
    ]
