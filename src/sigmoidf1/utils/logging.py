"""Loggers that speak on rank zero only, so that DDP runs do not repeat every line per process."""

from __future__ import annotations

import logging

from lightning.pytorch.utilities import rank_zero_only


class RankZeroLogger(logging.LoggerAdapter):
    """A ``logging.Logger`` adapter that drops records on ranks other than 0."""

    def log(self, level: int, msg: object, *args, **kwargs) -> None:
        if rank_zero_only.rank == 0 and self.isEnabledFor(level):
            msg, kwargs = self.process(msg, kwargs)
            self.logger.log(level, msg, *args, **kwargs)


def get_logger(name: str) -> RankZeroLogger:
    return RankZeroLogger(logging.getLogger(name), {})
