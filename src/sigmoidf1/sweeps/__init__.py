"""Optuna searches that survive a kill and share their study between workers.

The Hydra sweeper (``hydra_plugins/sigmoidf1_sweeper``, ``-m hparams_search=<name>``) is a thin
driver over these modules, which know nothing of Hydra:

- ``study``: where a study lives (a journal file by default, or a database URL), loading it, and
  the attribute names this package writes on trials;
- ``space``: the search space, written in Hydra's sweep syntax, as Optuna distributions;
- ``workers``: which process runs which trial, its heartbeat, and failing (then retrying) the
  trials of workers that died;
- ``loop``: ask, run and tell trials until the study holds ``n_trials`` finished ones, with any
  number of workers on the same study;
- ``plots``: optimisation history, parameter importances and parallel coordinates as PNGs.

``python -m sigmoidf1.sweeps status|plots <sweep dir>`` reads a study, also while it runs.
"""
