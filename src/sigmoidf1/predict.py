"""Predict labels for new inputs: ``sigmoidf1-predict ckpt_path=... input=FILE output=FILE.jsonl``.

Writes one JSON line per input row: ``{"labels": [...], "scores": {label: probability}}``, with the
label names, preprocessing and per-label thresholds stored in the checkpoint.
"""

from __future__ import annotations

from sigmoidf1.extras import require_template

require_template("sigmoidf1-predict")  # one line saying what to install, not an ImportError

import hydra
from omegaconf import DictConfig

from sigmoidf1 import CONFIG_DIR
from sigmoidf1.utils.errors import check_arguments, report_errors


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="predict")
def main(cfg: DictConfig) -> None:
    with report_errors():
        check_arguments(cfg, files=("ckpt_path", "input"))  # before torch is imported
        from sigmoidf1.inference import predict  # heavy imports stay off the `--help` path

        predict(cfg)


if __name__ == "__main__":
    main()
