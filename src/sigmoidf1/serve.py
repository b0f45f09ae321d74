"""Serve a trained model over HTTP: ``sigmoidf1-serve ckpt_path=... host=127.0.0.1 port=8000``.

``POST /predict`` with ``{"inputs": [row, ...]}`` (rows as in a ``sigmoidf1-predict`` input file)
answers ``{"predictions": [{"labels": [...], "scores": {label: probability}}, ...]}``; ``GET
/health`` answers 200 once the model is loaded. Needs the ``serve`` extra (LitServe); see
``sigmoidf1.serving``.
"""

from __future__ import annotations

from sigmoidf1.extras import require_template

require_template("sigmoidf1-serve")  # one line saying what to install, not an ImportError

import importlib.util

import hydra
from omegaconf import DictConfig

from sigmoidf1 import CONFIG_DIR
from sigmoidf1.utils.errors import ConfigError, check_arguments, report_errors


@hydra.main(version_base="1.3", config_path=CONFIG_DIR, config_name="serve")
def main(cfg: DictConfig) -> None:
    with report_errors():
        check_arguments(cfg, files=("ckpt_path",))  # before torch is imported
        if importlib.util.find_spec("litserve") is None:
            raise ConfigError(
                "sigmoidf1-serve needs LitServe: pip install 'sigmoidf1[serve]' (or litserve)"
            )
        from sigmoidf1.serving import serve  # heavy imports stay off the `--help` path

        serve(cfg)


if __name__ == "__main__":
    main()
