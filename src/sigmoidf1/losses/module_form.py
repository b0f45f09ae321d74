"""The ``nn.Module`` form of a functional loss, and presets that fix some of its arguments.

A functional loss is ``function(logits, targets, **options) -> 0-d tensor``. Its module form is a
subclass of ``FunctionalLoss`` that names the function; the constructor takes the function's
options (same names, defaults and order: the signature is derived, so ``get_loss``, Hydra and
``help()`` see them) and ``forward(logits, targets)`` calls the function with them::

    class FocalLoss(FunctionalLoss):
        function = staticmethod(focal_loss)
        check = staticmethod(check_focal)     # optional: validate the options at construction

A preset is a subclass with some options fixed, removed from its signature (the torchmetrics
``MultilabelF1Score(MultilabelFBetaScore)`` pattern)::

    class SigmoidF1Loss(SigmoidMetricLoss, fixed={"metric": "f1", "f_beta": 1.0}): ...
    sigmoid_f1_loss = function_of(SigmoidF1Loss, "sigmoid_f1_loss")   # its functional form

So an option added to a function reaches its module, every preset and every preset function.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any, ClassVar

from torch import Tensor, nn

LossFn = Callable[..., Tensor]


def options_signature(function: LossFn, fixed: dict[str, Any]) -> inspect.Signature:
    """The signature of ``function`` without ``(logits, targets)`` and without ``fixed``."""
    params = list(inspect.signature(function).parameters.values())[2:]
    unknown = set(fixed) - {p.name for p in params}
    if unknown:
        raise TypeError(f"{function.__name__} has no option(s) {sorted(unknown)} to fix")
    return inspect.Signature([p for p in params if p.name not in fixed])


class FunctionalLoss(nn.Module):
    """Module form of ``function``: stores its options, checks them once, calls it in forward.

    Class attributes: ``function`` (the functional loss), ``check`` (``None`` or a callable
    taking every option of ``function`` as keywords and raising ``ValueError``), ``fixed``
    (options a preset fixes; set with the class keyword ``fixed={...}``, merged with the parent's).
    """

    function: ClassVar[LossFn]
    check: ClassVar[Callable[..., None] | None] = None
    fixed: ClassVar[dict[str, Any]] = {}

    def __init_subclass__(cls, fixed: dict[str, Any] | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.fixed = {**cls.fixed, **(fixed or {})}
        # a subclass with its own __init__ describes itself (inspect then reads that __init__)
        described = "__init__" in cls.__dict__ or not hasattr(cls, "function")
        cls.__signature__ = None if described else options_signature(cls.function, cls.fixed)

    def __init__(self, *args: Any, **options: Any) -> None:
        super().__init__()
        bound = inspect.signature(type(self)).bind(*args, **options)
        bound.apply_defaults()
        self.options = dict(bound.arguments)
        if self.check is not None:
            self.check(**self.options, **self.fixed)

    def forward(self, logits: Tensor, targets: Tensor) -> Tensor:
        return self.function(logits, targets, **self.options, **self.fixed)

    def extra_repr(self) -> str:
        return ", ".join(f"{key}={value!r}" for key, value in self.options.items())


def function_of(cls: type[FunctionalLoss], name: str) -> LossFn:
    """The functional form of a preset: ``cls.function`` with ``cls.fixed`` fixed, named ``name``
    (give it the name it is bound to in ``cls``'s module, so that it pickles by reference)."""
    function, fixed = cls.function, cls.fixed

    def loss(logits: Tensor, targets: Tensor, **options: Any) -> Tensor:
        return function(logits, targets, **options, **fixed)

    head = list(inspect.signature(function).parameters.values())[:2]
    options = options_signature(function, fixed).parameters.values()
    loss.__signature__ = inspect.Signature([*head, *options])
    loss.__name__ = loss.__qualname__ = name
    loss.__module__ = cls.__module__
    loss.__doc__ = (
        f"Functional form of ``{cls.__name__}``: ``{name}(logits, targets, **options)``, both\n"
        f"``[batch, num_labels]`` -> 0-d tensor; the options of ``{function.__name__}`` less\n"
        f"{fixed} (fixed).\n\n{inspect.getdoc(cls)}"
    )
    return loss
