"""Backbones: each maps a batch's inputs to a feature vector ``[batch, out_features]``.

A backbone is an ``nn.Module`` with an ``out_features`` attribute; ``MultilabelClassifier`` adds
the linear head. Configs instantiate backbones with ``_partial_: true``; the facts that depend on
the data (``in_features``, ``vocab_size``, ``in_channels`` ...) are filled in by
``build_backbone`` from the DataModule's ``backbone_inputs``, so nobody types them by hand.

=======================  =================  ===================================================
class                    config             inputs
=======================  =================  ===================================================
``MLP``                  ``mlp``            float ``[batch, in_features]``
``CNN``                  ``cnn``            float ``[batch, in_channels, H, W]``
``TorchvisionBackbone``  ``torchvision``    float ``[batch, in_channels, H, W]``
``EmbeddingBag``         ``embedding_bag``  ``{"input_ids", "attention_mask"}`` ``[batch, T]``
``TransformerBackbone``  ``transformer``    ``{"input_ids", "attention_mask"}`` ``[batch, T]``
``EfficientNetLite``     (``encoder=``)     float ``[batch, in_channels, H, W]``
=======================  =================  ===================================================

(config: ``model/backbone=<option>``.) To add one: a module here and
``configs/model/backbone/<name>.yaml`` (``_target_`` the class, ``_partial_: true``). **What a
backbone must do** (``pytest tests/test_contracts.py`` checks every config of the group):

1. take the data facts it needs by name in ``__init__`` (``in_features``, ``in_channels``,
   ``vocab_size`` / ``padding_idx``: what the DataModules put in ``backbone_inputs``); every other
   argument has a default or a value in its config;
2. expose ``out_features`` (an int) and map a batch's inputs to float features
   ``[batch, out_features]``, finite and differentiable (the template adds the linear head).
"""

from sigmoidf1.backbones.build import build_backbone
from sigmoidf1.backbones.cnn import CNN
from sigmoidf1.backbones.efficientnet_lite import EfficientNetLite
from sigmoidf1.backbones.embedding_bag import EmbeddingBag
from sigmoidf1.backbones.mlp import MLP
from sigmoidf1.backbones.torchvision_model import TorchvisionBackbone
from sigmoidf1.backbones.transformer import TransformerBackbone

__all__ = [
    "CNN",
    "EfficientNetLite",
    "MLP",
    "EmbeddingBag",
    "TorchvisionBackbone",
    "TransformerBackbone",
    "build_backbone",
]
