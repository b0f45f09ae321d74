"""Name -> loss factory registry: ``register_loss``, ``get_loss``, ``available_losses``.

Register your own loss from any module (it must be imported before ``get_loss`` is called; a
module inside ``src/sigmoidf1/losses/`` is imported with the package)::

    from sigmoidf1.losses import register_loss

    @register_loss("my_loss")
    class MyLoss(nn.Module):
        def __init__(self, weight: float = 1.0): ...
        def forward(self, logits, targets): ...   # [batch, num_labels] each -> 0-d tensor

Hydra configs build losses with ``_target_: sigmoidf1.losses.get_loss`` and ``name: <name>``.

**What a registered loss must do** (``tests/core/test_loss_contract.py`` checks every registered
loss, yours included, and names the contract that failed):

1. build with no arguments: every constructor argument has a default (``loss=my_loss`` works);
2. take logits and binary targets, both float ``[batch, num_labels]``, and return a finite 0-d
   tensor whose gradient with respect to the logits is finite, also for logits of +-1e4 and for a
   batch without any positive;
3. score confident right predictions lower than confident wrong ones;
4. compute in float32 under autocast: given float16/bfloat16 logits
   (``trainer.precision=bf16-mixed``) return float32, equal to the float32 computation (cast
   first: ``logits.float()``; half precision sums over a batch lose digits);
5. have a config ``configs/loss/<name>.yaml`` that Hydra instantiates (template only).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from torch import nn

from sigmoidf1.keywords import accepted_keywords, missing_keywords

F = TypeVar("F", bound=Callable[..., nn.Module])

_LOSSES: dict[str, Callable[..., nn.Module]] = {}


def register_loss(name: str) -> Callable[[F], F]:
    """Decorator registering a class or factory (returning an ``nn.Module``) under ``name``.

    Raises ``ValueError`` if ``name`` is already registered (or is not a non-empty string).
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"loss name must be a non-empty string, got {name!r}")

    def decorator(factory: F) -> F:
        if not callable(factory):
            raise TypeError(f"register_loss({name!r}) expects a class or function, got {factory!r}")
        if name in _LOSSES:
            raise ValueError(
                f"a loss named {name!r} is already registered ({_qualname(_LOSSES[name])}); "
                "choose another name"
            )
        _LOSSES[name] = factory
        return factory

    return decorator


def available_losses() -> list[str]:
    """Sorted names of the registered losses."""
    return sorted(_LOSSES)


def get_loss(name: str, **kwargs: Any) -> nn.Module:
    """Build the loss registered as ``name`` with keyword arguments ``kwargs``.

    OmegaConf containers (what Hydra passes for YAML lists/dicts) are converted to plain
    lists/dicts first. Raises ``ValueError`` for an unknown name (listing the available ones) and
    for unknown or missing keyword arguments (naming the loss and the accepted keywords).
    """
    if name not in _LOSSES:
        raise ValueError(f"unknown loss {name!r}; available: {', '.join(available_losses())}")
    factory = _LOSSES[name]
    kwargs = {key: _to_plain(value) for key, value in kwargs.items()}
    _check_kwargs(name, factory, kwargs)
    loss = factory(**kwargs)
    if not isinstance(loss, nn.Module):
        raise TypeError(f"loss {name!r} factory returned {type(loss).__name__}, not an nn.Module")
    return loss


def _check_kwargs(name: str, factory: Callable[..., Any], kwargs: dict[str, Any]) -> None:
    accepted = accepted_keywords(factory)
    unknown = sorted(set(kwargs) - set(accepted)) if accepted is not None else []
    if unknown:
        raise ValueError(
            f"loss {name!r} got unexpected keyword argument(s) {', '.join(map(repr, unknown))}; "
            f"accepted: {', '.join(accepted) or '(none)'}"
        )
    missing = missing_keywords(factory, kwargs)
    if missing:
        raise ValueError(
            f"loss {name!r} is missing required keyword argument(s) {', '.join(map(repr, missing))}"
        )


def _to_plain(value: Any) -> Any:
    """OmegaConf ``ListConfig``/``DictConfig`` -> list/dict; anything else unchanged."""
    try:
        from omegaconf import Container, OmegaConf
    except ImportError:  # pragma: no cover - omegaconf comes with hydra
        return value
    if isinstance(value, Container):
        return OmegaConf.to_container(value, resolve=True)
    return value


def _qualname(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"
