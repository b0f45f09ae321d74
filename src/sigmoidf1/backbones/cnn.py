"""A small convolutional network for images trained from scratch (the default image backbone)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


class CNN(nn.Module):
    """``images [batch, in_channels, H, W] -> features [batch, out_features]``.

    Stages of ``convs_per_stage x (Conv3x3 -> BatchNorm -> ReLU)`` then a 2x2 max-pool, one stage
    per entry of ``channels``; then global pooling over space: ``"avg"`` (mean), ``"max"``, or
    ``"avgmax"`` (both, concatenated: ``out_features = 2 * channels[-1]``). Global pooling makes the
    network independent of the image size; max pooling suits "is the object anywhere?" questions.
    ``stem_stride=2`` gives the very first convolution stride 2: the whole network then costs about
    4x less, at some loss of fine detail (the default, for CPU-sized runs).
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int] = (32, 64, 128),
        convs_per_stage: int = 1,
        pool: str = "avgmax",
        dropout: float = 0.1,
        stem_stride: int = 2,
    ) -> None:
        super().__init__()
        if pool not in ("avg", "max", "avgmax"):
            raise ValueError(f"pool must be 'avg', 'max' or 'avgmax', got {pool!r}")
        if not channels or convs_per_stage < 1:
            raise ValueError("CNN needs at least one stage of at least one convolution")
        layers: list[nn.Module] = []
        width = in_channels
        stride = stem_stride
        for out in channels:
            for _ in range(convs_per_stage):
                layers += [
                    nn.Conv2d(width, out, 3, stride=stride, padding=1, bias=False),
                    nn.BatchNorm2d(out),
                    nn.ReLU(inplace=True),
                ]
                width, stride = out, 1
            layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.pool = pool
        self.dropout = nn.Dropout(dropout)
        self.out_features = width * (2 if pool == "avgmax" else 1)

    def forward(self, images: Tensor) -> Tensor:
        maps = self.features(images)
        pooled = []
        if self.pool in ("avg", "avgmax"):
            pooled.append(maps.mean(dim=(2, 3)))
        if self.pool in ("max", "avgmax"):
            pooled.append(maps.amax(dim=(2, 3)))
        return self.dropout(torch.cat(pooled, dim=1))
