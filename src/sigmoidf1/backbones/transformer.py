"""Hugging Face transformer encoders (BERT, DistilBERT, MiniLM ...) as text backbones."""

from __future__ import annotations

from torch import Tensor, nn

from sigmoidf1.utils.pretrained import resolve_pretrained


class TransformerBackbone(nn.Module):
    """``{"input_ids": [batch, T], "attention_mask": [batch, T]} -> features [batch, hidden_size]``.

    ``AutoModel.from_pretrained(model_name_or_path)``: a local folder, a hub name when online, or
    ``pip:<module>`` for a model shipped in a pip package (``sigmoidf1.utils.pretrained``);
    the text DataModule tokenises with the matching ``AutoTokenizer`` (the data configs point
    ``data.tokenizer`` at ``model.backbone.model_name_or_path``). Pooling of the last hidden states
    ``h [batch, T, hidden]``: ``"cls"`` takes ``h[:, 0]`` (the ``[CLS]`` token, as DistilBERT
    fine-tuning does), ``"mean"`` the mask-weighted mean ``sum_t m_t h_t / sum_t m_t`` (what
    sentence-transformers models such as all-MiniLM-L6-v2 were trained for).

    ``freeze=True`` trains only the head: the encoder's weights get no gradient and it stays in eval
    mode (no dropout) even while the rest of the model trains.
    """

    def __init__(self, model_name_or_path: str, pooling: str = "cls", freeze: bool = False) -> None:
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        from transformers import AutoModel  # optional dependency (the `text` extra)
        from transformers.utils import logging as transformers_logging

        # a "Loading weights" bar per model load: noise around the run's own progress bar
        transformers_logging.disable_progress_bar()
        try:
            self.encoder = AutoModel.from_pretrained(resolve_pretrained(model_name_or_path))
        except (OSError, ValueError) as error:
            raise ValueError(
                f"cannot load a transformer from {model_name_or_path!r}: give a local folder with "
                f"config.json and weights, or a reachable hub name ({error})"
            ) from error
        self.pooling = pooling
        self.freeze = freeze
        self.encoder.requires_grad_(not freeze)
        # from_pretrained returns the encoder in eval mode, and Lightning keeps each module's mode:
        # fine-tuning must start in train mode (dropout on), a frozen encoder stays in eval mode
        self.encoder.train(not freeze)
        self.out_features = int(self.encoder.config.hidden_size)
        # the longest input its position embeddings cover (None: unbounded); export bounds by it
        self.max_tokens = getattr(self.encoder.config, "max_position_embeddings", None)

    def train(self, mode: bool = True) -> TransformerBackbone:
        super().train(mode)
        if self.freeze:
            self.encoder.eval()
        return self

    def forward(self, inputs: dict[str, Tensor]) -> Tensor:
        mask = inputs["attention_mask"]
        hidden = self.encoder(input_ids=inputs["input_ids"], attention_mask=mask).last_hidden_state
        if self.pooling == "cls":
            return hidden[:, 0]
        weights = mask.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)
