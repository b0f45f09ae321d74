"""Export a trained model: ``sigmoidf1-export ckpt_path=... format=onnx|torchscript|...``.

Writes a model file that maps the model's inputs to probabilities and thresholded decisions, and a
JSON beside it with the label names, thresholds and preprocessing (see ``sigmoidf1.exporting``).
"""

from __future__ import annotations

from sigmoidf1.extras import require_template

require_template("sigmoidf1-export")  # one line saying what to install, not an ImportError

import hydra
from omegaconf import DictConfig

from sigmoidf1 import CONFIG_DIR
from sigmoidf1.utils.errors import check_arguments, report_errors


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="export")
def main(cfg: DictConfig) -> None:
    with report_errors():
        check_arguments(cfg, files=("ckpt_path",))  # before torch is imported
        from sigmoidf1.exporting import export  # heavy imports stay off the `--help` path

        export(cfg)


if __name__ == "__main__":
    main()
