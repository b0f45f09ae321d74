"""User errors: a clear message and a non-zero exit instead of a wall of traceback.

The entry points run their work inside ``report_errors``. Errors that come from the user's input
(a config value, a data file, a checkpoint) are printed as one short message and end the process
with exit code 2 (configuration) or 1 (data, checkpoint, diverged training); the full traceback
still goes to the run's log file. Anything else is a bug and keeps its traceback. Set
``HYDRA_FULL_ERROR=1`` to get the traceback of every error.

Signals: a run stopped by SIGTERM exits with 143 and Ctrl-C with 130 (128 + the signal number),
after the interrupt checkpoint was written (see ``sigmoidf1.callbacks.InterruptCheckpoint``, which
records them in
``sigmoidf1.utils.interruption``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

EXIT_ERROR = 1  # bad data, bad checkpoint, diverged training
EXIT_CONFIG = 2  # bad configuration value (the usual exit code of command-line usage errors)
EXIT_SIGINT = 130  # 128 + SIGINT
EXIT_SIGTERM = 143  # 128 + SIGTERM


class UserError(Exception):
    """An error in what the user supplied; shown as its message, without traceback."""

    exit_code = EXIT_ERROR


class ConfigError(UserError, ValueError):
    """A configuration value that cannot work (names the key, the value and what is allowed)."""

    exit_code = EXIT_CONFIG


class DataError(UserError, ValueError):
    """A data file that cannot be used (names the file and what is wrong in it)."""


class CheckpointError(UserError, ValueError):
    """A checkpoint that cannot be loaded (names the file)."""


def _loaded(module: str, name: str) -> type[BaseException] | None:
    """``module.name`` when ``module`` is already imported, else ``None``: an exception type of a
    library that was never imported cannot have been raised, and importing Lightning only to
    test for its exceptions would cost seconds on the argument-error path."""
    loaded = sys.modules.get(module)
    return getattr(loaded, name, None) if loaded is not None else None


def _process_rank() -> int:
    """This process's rank in a distributed run as Lightning knows it (0 without Lightning)."""
    rank_zero_only = _loaded("lightning.pytorch.utilities", "rank_zero_only")
    return int(getattr(rank_zero_only, "rank", 0) or 0)


def _misconfiguration() -> tuple[type[BaseException], ...]:
    found = _loaded("lightning.fabric.utilities.exceptions", "MisconfigurationException")
    return (found,) if found is not None else ()


def _user_error_types() -> tuple[type[BaseException], ...]:
    """Errors that describe the user's input. A bare ``ValueError`` is not among them: raised
    outside a constructor that Hydra calls with config values, it is more likely a bug."""
    from omegaconf.errors import MissingMandatoryValue

    return (
        UserError,
        FileNotFoundError,
        NotADirectoryError,
        IsADirectoryError,
        FloatingPointError,
        MissingMandatoryValue,
        *_misconfiguration(),
    )


# What a constructor raises when Hydra hands it a config value it cannot take.
_CONSTRUCTOR_REFUSALS = (ValueError, TypeError, FileNotFoundError)


def describe(error: BaseException) -> tuple[str, int] | None:
    """``(message, exit code)`` when ``error`` is a user error, else ``None`` (a bug)."""
    from hydra.errors import InstantiationException
    from omegaconf.errors import MissingMandatoryValue

    if isinstance(error, InstantiationException):
        # Hydra wraps whatever a constructor raised (twice when the module builds its loss): the
        # innermost message is the useful one, the outermost key says where in the config
        cause = innermost_cause(error)
        if isinstance(cause, UserError):  # already names what is wrong and where
            return str(cause), cause.exit_code
        if not isinstance(cause, _CONSTRUCTOR_REFUSALS + _user_error_types()):
            return None  # e.g. a RuntimeError inside a constructor: a bug, keep the traceback
        text = str(error)
        key = re.search(r"full_key:\s*(\S+)", text)
        target = re.search(r"target '([^']+)'", text)
        where = f"`{key.group(1)}`" if key else "the config"
        made = f" ({target.group(1)})" if target else ""
        return f"invalid config in {where}{made}: {cause}", EXIT_CONFIG
    if isinstance(error, MissingMandatoryValue):
        key = getattr(error, "full_key", None) or "a required key"
        return (
            f"missing required value: {key} (pass it on the command line, e.g. {key}=...)",
            EXIT_CONFIG,
        )
    if isinstance(error, _user_error_types()):
        code = getattr(error, "exit_code", EXIT_ERROR)
        if isinstance(error, _misconfiguration()):
            code = EXIT_CONFIG
        message = str(error) or type(error).__name__
        if (
            isinstance(error, FileNotFoundError)
            and error.filename
            and error.filename not in message
        ):
            message = f"{message}: {error.filename}"
        return message, code
    return None


def check_arguments(cfg: Any, files: tuple[str, ...] = ()) -> None:
    """Refuse a command line that cannot work before anything heavy is imported (torch and
    Lightning take seconds): a required value left unset (``???``) anywhere in ``cfg``, or a path
    among the top-level keys ``files`` that is set but does not exist."""
    from omegaconf import OmegaConf
    from omegaconf.errors import MissingMandatoryValue

    missing = sorted(OmegaConf.missing_keys(cfg))
    if missing:
        error = MissingMandatoryValue(f"Missing mandatory value: {missing[0]}")
        error.full_key = missing[0]
        raise error
    for key in files:
        value = cfg.get(key)
        if value is not None and not os.path.exists(str(value)):
            raise FileNotFoundError(f"{key} not found: {value}")


def config_section(section: str, config: Any) -> Any:
    """``hydra.utils.instantiate(config)``; a constructor's refusal becomes a ``ConfigError``
    naming ``section`` (the config key the user sets), a bug keeps its exception."""
    from hydra.errors import InstantiationException
    from hydra.utils import instantiate

    try:
        return instantiate(config)
    except InstantiationException as error:
        cause = innermost_cause(error)
        if isinstance(cause, _CONSTRUCTOR_REFUSALS + (UserError,)):
            raise ConfigError(f"invalid config in `{section}`: {cause}") from error
        raise


def innermost_cause(error: BaseException) -> BaseException:
    """The exception at the bottom of Hydra's ``InstantiationException`` wrappers."""
    from hydra.errors import InstantiationException

    while isinstance(error, InstantiationException) and error.__cause__ is not None:
        error = error.__cause__
    return error


def _log_traceback_to_files(error: BaseException) -> None:
    """Write the traceback to the log files only (the console gets the short message)."""
    text = "".join(traceback.format_exception(type(error), error, error.__traceback__))
    record = logging.LogRecord(
        "sigmoidf1", logging.ERROR, __file__, 0, "traceback of the error above:\n%s", (text,), None
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def print_error(message: str) -> None:
    """``error: <message>`` on stderr (red on a terminal) and in the log files. The message is
    printed as it is: brackets in it (``trusted_targets=[mylab]``) are not Rich markup."""
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]error:[/bold red] {escape(message)}", markup=True
    )
    record = logging.LogRecord(
        "sigmoidf1", logging.ERROR, __file__, 0, "error: %s", (message,), None
    )
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def _in_multirun() -> bool:
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN
    except Exception:  # no Hydra context (called from Python)
        return False


@contextmanager
def report_errors() -> Iterator[None]:
    """Turn user errors and interruptions raised inside into a message and an exit code.

    In a multirun the error is re-raised after the message so that the sweeper decides what to
    do with the failed job; ``HYDRA_FULL_ERROR=1`` re-raises everything with its traceback.
    """
    try:
        yield
    except SystemExit as exit_:
        # Lightning's SIGTERMException is a SystemExit; looked up only if Lightning was imported
        sigterm = _loaded("lightning.pytorch.utilities.exceptions", "SIGTERMException")
        if sigterm is None or not isinstance(exit_, sigterm):
            raise
        from sigmoidf1.utils.interruption import last_signal, requeued_job, saved_checkpoint

        name = last_signal() or "SIGTERM"
        saved = saved_checkpoint()
        if saved and requeued_job():
            message = (
                f"stopped by {name}; SLURM job {requeued_job()} is requeued and continues from "
                f"{saved} when it restarts"
            )
        else:
            message = f"stopped by {name}" + (f"; resume with ckpt_path={saved}" if saved else "")
            if saved and os.environ.get("SLURM_JOB_ID"):
                message += " (a requeued SLURM job continues from it by itself)"
        if _process_rank() == 0:  # the other processes of a distributed run exit silently
            print_error(message)
        sys.exit(EXIT_SIGINT if name == "SIGINT" else EXIT_SIGTERM)
    except KeyboardInterrupt:
        print_error("interrupted (Ctrl-C)")
        sys.exit(EXIT_SIGINT)
    except Exception as error:
        described = describe(error)
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if described is None:  # a bug: Hydra prints the traceback of what is raised here
            raise innermost_cause(error) from None  # not Hydra's wrapper: it hides the traceback
        message, code = described
        print_error(message)
        _log_traceback_to_files(error)
        if _in_multirun():
            raise
        sys.exit(code)
