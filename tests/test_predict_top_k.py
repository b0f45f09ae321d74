"""``sigmoidf1-predict top_k=k``: the k highest scores per row, labels still thresholded."""

from __future__ import annotations

import json

import pytest
import torch
from omegaconf import OmegaConf

from sigmoidf1.inference import format_rows, predict
from sigmoidf1.utils.errors import ConfigError

NAMES = ["a", "b", "c", "d", "e"]


def rows(*args, **kwargs) -> list[dict]:
    return [json.loads(line) for line in format_rows(*args, **kwargs)]


def test_top_k_keeps_the_highest_scores_and_thresholds_only_those():
    probabilities = torch.tensor([[0.1, 0.9, 0.3, 0.8, 0.6], [0.2, 0.1, 0.05, 0.3, 0.25]])
    predicted = torch.tensor([[0, 1, 0, 0, 1], [1, 0, 0, 0, 0]]).bool()  # per-label thresholds
    top = rows(probabilities, predicted, NAMES, None, top_k=3)
    assert list(top[0]["scores"]) == ["b", "d", "e"]  # highest first
    assert top[0]["scores"]["d"] == pytest.approx(0.8)
    assert top[0]["labels"] == ["b", "e"]  # d is in the top 3 but below its threshold
    assert list(top[1]["scores"]) == ["d", "e", "a"] and top[1]["labels"] == ["a"]
    # more than there are labels: every label, still sorted; without top_k: unchanged format
    assert list(rows(probabilities, predicted, NAMES, 2, top_k=9)[0]["scores"]) == list("bdeca")
    full = rows(probabilities, predicted, NAMES, None)
    assert list(full[0]["scores"]) == NAMES and full[0]["labels"] == ["b", "e"]


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "3"])
def test_a_bad_top_k_is_refused_before_loading_anything(bad):
    cfg = OmegaConf.create(
        {"top_k": bad, "batch_size": None, "ckpt_path": "missing.ckpt", "extras": {}}
    )
    with pytest.raises(ConfigError, match="top_k"):
        predict(cfg)
