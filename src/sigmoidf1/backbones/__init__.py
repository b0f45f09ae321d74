"""Backbones: each maps a batch's inputs to a feature vector ``[batch, out_features]``.

A backbone is an ``nn.Module`` with an ``out_features`` attribute; ``MultilabelClassifier`` adds the
linear head. Configs instantiate backbones with ``_partial_: true``; the facts that depend on the data
(``in_features``, ``vocab_size``, ``in_channels`` ...) are filled in by ``build_backbone`` from the
DataModule's ``backbone_inputs``, so nobody types them by hand.
"""

from sigmoidf1.backbones.build import build_backbone
from sigmoidf1.backbones.mlp import MLP

__all__ = ["MLP", "build_backbone"]
