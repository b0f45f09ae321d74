"""Run an entry point in a process forked from a warm interpreter: a process of its own, without
the seconds of imports.

A template process spends most of a short run importing (``import lightning`` alone takes 4-7 s
on the 2-core CI machine, most of it torchmetrics importing torchvision, transformers and
scipy.signal, Lightning-AI/torchmetrics#3457), and the CLI tests start about a hundred of them.
Each test worker starts one helper interpreter (``serve``) that imports the entry points and does
nothing else; every command is a fork of it. The fork starts at once and is a process of its own:
its own exit code, file descriptors, working directory, environment, signal handlers and global
state. The helper never trains, so its forks inherit nothing a run left behind (torch refuses
autograd in a fork of a process that has run a backward pass), nor the worker's threads and
pytest's capture, logging and warning state.

What differs from ``python -m sigmoidf1.<module>``: the modules were imported before the command's
environment was set. ``run_cli`` therefore starts a new interpreter where that can matter
(``needs_a_fresh_interpreter``).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import json
import os
import re
import select
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
# helper imports them once, before its first fork of that entry point, and every fork has them
RUNS_ON = {
    "train": "sigmoidf1.pipeline",
    "eval": "sigmoidf1.pipeline",
    "predict": "sigmoidf1.inference",
    "export": "sigmoidf1.exporting",
    "serve": "sigmoidf1.serving",
}


def needs_a_fresh_interpreter(overrides: tuple[str, ...], env: dict | None) -> bool:
    """True for a command that must start a new Python: one whose environment the test sets
    beyond ``PYTHONPATH`` (read at import time: ``PYTHONWARNINGS``, thread counts; a fork puts the
    ``PYTHONPATH`` folders first on its ``sys.path``, as a new interpreter would), and the
    overrides in ``FRESH``."""
    set_by_the_test = set(env or {}) - {"PYTHONPATH"}
    return bool(set_by_the_test) or any(FRESH.match(override) for override in overrides)


class _Helper:
    """The worker's side of the helper interpreter: one request at a time, as JSON lines."""

    def __init__(self) -> None:
        root = str(Path(__file__).resolve().parents[1])
        search_path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
        self.process = subprocess.Popen(
            [sys.executable, "-c", "from tests.forked import serve; serve()"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            cwd=root,
            env={**os.environ, "PYTHONPATH": search_path},
        )
        self.buffer = b""
        atexit.register(self.process.stdin.close)  # the helper ends at end of input

    def send(self, request: dict) -> None:
        self.process.stdin.write(json.dumps(request).encode() + b"\n")
        self.process.stdin.flush()

    def receive(self, timeout: float | None = None) -> dict | None:
        """The next reply; None if none came within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        fd = self.process.stdout.fileno()
        while b"\n" not in self.buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([fd], [], [], left)[0]:
                return None
            chunk = os.read(fd, 65536)
            if not chunk:
                raise RuntimeError(f"the forking helper exited ({self.process.wait()})")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return json.loads(line)


_helper: _Helper | None = None


def run_forked(
    module: str, overrides: tuple[str, ...], cwd: Path, env: dict[str, str], timeout: float
) -> subprocess.CompletedProcess:
    """``sigmoidf1.<module>.main()`` with ``sys.argv = [sigmoidf1-<module>, *overrides]`` in a
    fork of the helper (its own process group) with ``cwd`` and exactly ``env`` as its
    environment; its stdout and stderr as a ``CompletedProcess``. ``subprocess.TimeoutExpired``
    after ``timeout`` seconds, the child's process group killed."""
    global _helper
    if _helper is None or _helper.process.poll() is not None:
        _helper = _Helper()
    argv = [f"sigmoidf1-{module}", *overrides]
    with tempfile.TemporaryDirectory() as outputs:
        out, err = Path(outputs) / "stdout", Path(outputs) / "stderr"
        request = {"module": module, "argv": argv, "cwd": str(cwd), "env": env}
        _helper.send({**request, "stdout": str(out), "stderr": str(err)})
        pid = _helper.receive()["pid"]  # after the helper's imports: not part of the timeout
        reply = _helper.receive(timeout)
        if reply is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _helper.receive()
            raise subprocess.TimeoutExpired(argv, timeout)
        code = os.waitstatus_to_exitcode(reply["status"])
        return subprocess.CompletedProcess(
            argv, code, out.read_text(errors="replace"), err.read_text(errors="replace")
        )


def serve() -> None:
    """The helper interpreter: for each request, import the entry point (once), fork, reply the
    child's pid, wait for it, reply its wait status."""
    replies = sys.stdout.buffer
    for line in sys.stdin.buffer:
        request = json.loads(line)
        for name in (f"sigmoidf1.{request['module']}", RUNS_ON.get(request["module"])):
            if name:
                importlib.import_module(name)
        pid = os.fork()
        if pid == 0:
            _run_child(request)  # never returns
        replies.write(json.dumps({"pid": pid}).encode() + b"\n")
        replies.flush()
        _, status = os.waitpid(pid, 0)
        replies.write(json.dumps({"status": status}).encode() + b"\n")
        replies.flush()


def exit_status(exit_: SystemExit) -> int:
    """The exit status Python gives ``raise SystemExit(code)``: 0 for None, an int as it is,
    anything else printed to stderr and 1."""
    if exit_.code is None or isinstance(exit_.code, int):
        return exit_.code or 0
    print(exit_.code, file=sys.stderr)
    return 1


def _run_child(request: dict) -> None:
    code = 1
    try:
        os.setpgid(0, 0)  # a timeout kills the child's own children too (data loader workers)
        _fresh_streams(request["stdout"], request["stderr"])
        os.chdir(request["cwd"])
        env = request["env"]
        os.environ.clear()
        os.environ.update(env)
        # what a new interpreter makes of the environment it starts with
        folders = [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p]
        sys.path[:0] = [p for p in folders if p not in sys.path]
        if env.get("PYTHONWARNINGS") == "ignore":
            warnings.simplefilter("ignore")
        sys.argv = request["argv"]
        try:
            importlib.import_module(f"sigmoidf1.{request['module']}").main()
            code = 0
        except SystemExit as exit_:
            code = exit_status(exit_)
        except BaseException:
            import traceback

            traceback.print_exc()  # what Python prints for an uncaught exception
            code = 1
        atexit._run_exitfuncs()  # as at an interpreter's exit
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


def _fresh_streams(stdout: str, stderr: str) -> None:
    """stdin from /dev/null, stdout and stderr to the given files, at the descriptors (for C code
    and child processes) and as Python's ``sys`` streams."""
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(os.open(stdout, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
    os.dup2(os.open(stderr, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
    sys.stdin = sys.__stdin__ = open(0, closefd=False)  # noqa: SIM115
    sys.stdout = sys.__stdout__ = open(1, "w", closefd=False)  # noqa: SIM115
    sys.stderr = sys.__stderr__ = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
