"""Any ``torchvision.models`` network as a feature extractor (its classifier removed)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


class TorchvisionBackbone(nn.Module):
    """``images [batch, in_channels, H, W] -> features [batch, out_features]``.

    Builds ``torchvision.models.get_model(name, weights=weights, **model_kwargs)``, optionally loads
    a local state dict (``weights_path``, the full model's), then:

    - input channels: when ``in_channels`` differs from the first convolution's, that convolution is
      replaced; with pretrained weights its kernel is the old one averaged over the input channels
      and rescaled (``W'[:, c] = mean_k W[:, k] * C_old / C_new``), so a grey image behaves like the
      same image repeated in RGB;
    - classifier: the last ``nn.Linear`` becomes the identity, so ``out_features`` is its input size
      (512 for resnet18); auxiliary heads (inception, googlenet) are dropped.

    ``weights=None`` (default) downloads nothing; ``weights="DEFAULT"`` or ``"IMAGENET1K_V1"`` use
    torchvision's download (needs internet or its cache in ``$TORCH_HOME``).
    """

    def __init__(
        self,
        name: str,
        in_channels: int = 3,
        weights: str | None = None,
        weights_path: str | None = None,
        model_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        import torchvision

        if name not in torchvision.models.list_models():
            raise ValueError(
                f"unknown torchvision model {name!r}; available: "
                f"{', '.join(torchvision.models.list_models())}"
            )
        model = torchvision.models.get_model(name, weights=weights, **(model_kwargs or {}))
        if weights_path:
            model.load_state_dict(torch.load(weights_path, map_location="cpu", weights_only=True))
        pretrained = bool(weights or weights_path)
        if getattr(model, "aux_logits", False):
            model.aux_logits = False
            for aux in ("AuxLogits", "aux1", "aux2"):
                if hasattr(model, aux):
                    setattr(model, aux, None)
        self._adapt_input(model, in_channels, pretrained)
        linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
        if not linears:
            raise ValueError(f"torchvision model {name!r} has no nn.Linear classifier to remove")
        classifier_name, classifier = linears[-1]
        _set_submodule(model, classifier_name, nn.Identity())
        self.model = model
        self.out_features = classifier.in_features

    @staticmethod
    def _adapt_input(model: nn.Module, in_channels: int, pretrained: bool) -> None:
        name, conv = next(
            ((n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d)), (None, None)
        )
        if conv is None or conv.in_channels == in_channels:
            return
        new = nn.Conv2d(
            in_channels,
            conv.out_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
            conv.groups,
            conv.bias is not None,
            conv.padding_mode,
        )
        if pretrained:
            with torch.no_grad():
                mean = conv.weight.mean(dim=1, keepdim=True) * (conv.in_channels / in_channels)
                new.weight.copy_(mean.expand(-1, in_channels, -1, -1))
                if conv.bias is not None:
                    new.bias.copy_(conv.bias)
        _set_submodule(model, name, new)

    def forward(self, images: Tensor) -> Tensor:
        features = self.model(images)
        return features[0] if isinstance(features, tuple) else features
