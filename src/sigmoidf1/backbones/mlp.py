"""Multi-layer perceptron for tabular features."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn


class MLP(nn.Module):
    """``x [batch, in_features] -> features [batch, hidden_sizes[-1]]``.

    Each hidden layer is ``Linear -> (LayerNorm) -> GELU -> Dropout``. With no hidden layer the
    backbone is the identity and the model is a linear (logistic) classifier.
    """

    def __init__(
        self,
        in_features: int,
        hidden_sizes: Sequence[int] = (256, 256),
        dropout: float = 0.1,
        layer_norm: bool = True,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = in_features
        for size in hidden_sizes:
            layers.append(nn.Linear(width, size))
            if layer_norm:
                layers.append(nn.LayerNorm(size))
            layers += [nn.GELU(), nn.Dropout(dropout)]
            width = size
        self.net = nn.Sequential(*layers)
        self.out_features = width

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)
