"""Strategy factories for ``trainer.strategy._target_`` where Lightning's own error falls short."""

from __future__ import annotations

import importlib.util
from typing import Any


def deepspeed_strategy(**kwargs: Any):
    """``lightning.pytorch.strategies.DeepSpeedStrategy(**kwargs)``, failing early and clearly when
    the ``deepspeed`` package is missing (it is not a dependency of this template: it needs CUDA and
    a
    compiler toolchain, and most runs here are better served by ``trainer=ddp`` or
    ``trainer=fsdp``).

    Raises:
        ImportError: naming ``pip install deepspeed`` and the alternatives.
    """
    if importlib.util.find_spec("deepspeed") is None:
        raise ImportError(
            "trainer=deepspeed needs the DeepSpeed package, which is not installed: "
            "`pip install deepspeed` (CUDA GPUs required), or use trainer=ddp / trainer=fsdp"
        )
    from lightning.pytorch.strategies import DeepSpeedStrategy

    return DeepSpeedStrategy(**kwargs)
