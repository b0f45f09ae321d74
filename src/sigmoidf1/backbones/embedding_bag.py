"""fastText-style text backbone: the mean of the token embeddings (a fast CPU baseline)."""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from sigmoidf1.backbones.mlp import MLP


class EmbeddingBag(nn.Module):
    """``{"input_ids", "attention_mask"}`` (each ``[batch, T]``) ``-> [batch, out_features]``.

    ``pooled_b = sum_t mask_bt * E[ids_bt] / sum_t mask_bt`` (padding excluded), computed by one
    fused
    ``nn.EmbeddingBag`` with per-token weights; then optional hidden layers (``MLP``) and dropout.
    ``vocab_size`` and ``padding_idx`` come from the text DataModule.
    """

    def __init__(
        self,
        vocab_size: int,
        embed_dim: int = 128,
        hidden_sizes: Sequence[int] = (),
        dropout: float = 0.0,
        padding_idx: int | None = 0,
    ) -> None:
        super().__init__()
        self.embedding = nn.EmbeddingBag(vocab_size, embed_dim, mode="sum", padding_idx=padding_idx)
        nn.init.normal_(self.embedding.weight, std=embed_dim**-0.5)
        if padding_idx is not None:
            self.embedding.weight.data[padding_idx].zero_()
        self.dropout = nn.Dropout(dropout)
        self.mlp = MLP(embed_dim, hidden_sizes, dropout=dropout)
        self.out_features = self.mlp.out_features

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        ids = inputs["input_ids"]
        mask = inputs["attention_mask"].to(self.embedding.weight.dtype)
        weights = mask / mask.sum(dim=1, keepdim=True).clamp(min=1.0)
        pooled = self.embedding(ids, per_sample_weights=weights)
        return self.mlp(self.dropout(pooled))
