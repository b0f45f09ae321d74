"""sigmoidf1's Hydra sweeper: Optuna searches that resume after a kill and share their study
between workers (``configs/hydra/sweeper/optuna.yaml``; the logic is in ``sigmoidf1.sweeps``).

Hydra finds sweepers only in the ``hydra_plugins`` namespace package, and imports every module in
it at each start: this package stays small and imports Optuna only when a sweep runs.
"""
