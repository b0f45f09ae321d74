"""Run an entry point in a forked copy of the test process: a process of its own, without the
seconds of imports.

A template process spends most of a short run importing (``import lightning`` alone takes 4-7 s
on the 2-core CI machine, most of it torchmetrics importing torchvision, transformers and
scipy.signal, Lightning-AI/torchmetrics#3457), and the CLI tests start about a hundred of them. A
fork of a test worker, which has imported all that already, starts at once and is still a process
of its own: its own exit code, file descriptors, working directory, environment, signal handlers
and global state (Hydra's, logging's, torch's seeds), and nothing it does reaches the worker.

What differs from ``python -m sigmoidf1.<module>``: the modules were imported before the command's
environment was set. ``run_cli`` therefore starts a fresh interpreter where that can matter
(``needs_a_fresh_interpreter``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

# Overrides whose run starts other processes from ``sys.argv`` or pickles the entry point (DDP's
# launcher re-runs the command, Hydra's launchers start jobs of their own), or that bring loggers
# with services and threads of their own (W&B, MLflow); these get a fresh interpreter.
FRESH = re.compile(
    r"^\+?(trainer=(ddp|fsdp)|trainer\.strategy=(ddp|fsdp)|hydra/launcher=|logger=(?!csv$))"
)


# What each entry point imports when it runs (its module keeps them off the ``--help`` path): the
# test worker imports them once, before its first fork, and every child starts with them
RUNS_ON = {
    "train": "sigmoidf1.pipeline",
    "eval": "sigmoidf1.pipeline",
    "predict": "sigmoidf1.inference",
    "export": "sigmoidf1.exporting",
    "serve": "sigmoidf1.serving",
}


def needs_a_fresh_interpreter(overrides: tuple[str, ...], env: dict | None) -> bool:
    """True for a command that must start a new Python: one whose environment the test sets (read
    at import time by some libraries: ``PYTHONPATH``, ``PYTHONWARNINGS``, thread counts), and the
    overrides in ``FRESH``."""
    return env is not None or any(FRESH.match(override) for override in overrides)


def run_forked(
    module: str, overrides: tuple[str, ...], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """``sigmoidf1.<module>.main()`` with ``sys.argv = [sigmoidf1-<module>, *overrides]`` in a
    forked child (its own process group) with ``cwd`` and exactly ``env`` as its environment;
    its stdout and stderr as a ``CompletedProcess``. ``subprocess.TimeoutExpired`` after
    ``timeout`` seconds, the child's process group killed."""
    argv = [f"sigmoidf1-{module}", *overrides]
    for name in (f"sigmoidf1.{module}", RUNS_ON.get(module)):
        if name:
            importlib.import_module(name)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _run_child(module, argv, cwd, env, out.fileno(), err.fileno())
        status = _wait(pid, timeout, argv)
        out.seek(0)
        err.seek(0)
        stdout = out.read().decode(errors="replace")
        stderr = err.read().decode(errors="replace")
    return subprocess.CompletedProcess(argv, os.waitstatus_to_exitcode(status), stdout, stderr)


def _wait(pid: int, timeout: float, argv: list[str]) -> int:
    deadline = time.monotonic() + timeout
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() > deadline:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            raise subprocess.TimeoutExpired(argv, timeout)
        time.sleep(0.05)


def _run_child(
    module: str, argv: list[str], cwd: Path, env: dict[str, str], out_fd: int, err_fd: int
) -> None:
    code = 1
    try:
        os.setpgid(0, 0)  # a timeout kills the child's own children too (data loader workers)
        _fresh_streams(out_fd, err_fd)
        os.chdir(cwd)
        os.environ.clear()
        os.environ.update(env)
        _as_at_start(env)
        atexit._clear()  # the test worker's exit handlers are not this process's
        sys.argv = argv
        try:
            importlib.import_module(f"sigmoidf1.{module}").main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            import traceback

            traceback.print_exc()  # what Python prints for an uncaught exception
            code = 1
        atexit._run_exitfuncs()  # the handlers the run registered, as at an interpreter's exit
        logging.shutdown()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _fresh_streams(out_fd: int, err_fd: int) -> None:
    """stdin from /dev/null, stdout and stderr to the given files, at the descriptors (for C code
    and child processes) and as Python's ``sys`` streams (pytest's capture objects dropped)."""
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_fd, 1)
    os.dup2(err_fd, 2)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115


def _as_at_start(env: dict[str, str]) -> None:
    """What a new interpreter starts with where the test worker differs: Python's warning filters
    from ``PYTHONWARNINGS``, and no handlers on the root logger (pytest's capture handlers go)."""
    warnings.resetwarnings()
    for action in filter(None, env.get("PYTHONWARNINGS", "").split(",")):
        warnings.simplefilter(action.split(":")[0])  # type: ignore[arg-type]
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
