"""Bytes that identify tensors, for cache keys (dtype and shape included, so that equal bytes of
different tensors never collide)."""

from __future__ import annotations

import torch
from torch import Tensor


def tensor_bytes(tensor: Tensor) -> bytes:
    """``"<dtype>:<shape>:"`` followed by the tensor's raw bytes (on the CPU, contiguous)."""
    tensor = tensor.detach().cpu().contiguous()
    header = f"{tensor.dtype}:{tuple(tensor.shape)}:".encode()
    return header + tensor.reshape(-1).view(torch.uint8).numpy().tobytes()
