"""Evaluate a checkpoint on its test split: ``sigmoidf1-eval ckpt_path=...``."""

from __future__ import annotations

from sigmoidf1.extras import require_template

require_template("sigmoidf1-eval")  # one line saying what to install, not an ImportError

import hydra
from omegaconf import DictConfig

from sigmoidf1 import CONFIG_DIR
from sigmoidf1.utils.errors import check_arguments, report_errors


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="eval")
def main(cfg: DictConfig) -> None:
    with report_errors():
        check_arguments(cfg, files=("ckpt_path",))  # before torch is imported
        from sigmoidf1.pipeline import evaluate  # heavy imports stay off the `--help` path

        evaluate(cfg)


if __name__ == "__main__":
    main()
