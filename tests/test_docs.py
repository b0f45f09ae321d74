"""The documentation is executable: every shell block of README.md and docs/*.md runs as written.

Each page runs in a fresh copy of the repository (its tracked files), its blocks in order, as a
reader who arrives at that page would run them (pages do not rely on each other's runs, so they
run in parallel): the code blocks that name a file (a fence such as ```` ```python
file=src/sigmoidf1/losses/f1_plus_bce.py````) are written there first, as a reader would create
them, then every ``bash`` block runs with ``bash -e``, with the default configs, callbacks and
loggers. The harness only appends size overrides (``SIZE``) to the template's commands; it never
edits a command otherwise.

A block that cannot run on this machine carries a visible mark on the line before its fence::

    <!-- not run here: needs a GPU -->

``test_the_marked_blocks_say_why`` lists them with their reasons; nothing else is skipped. A
command added to the documentation without running breaks this test.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

PAGES = ["README.md", *sorted(str(p.relative_to(REPO_ROOT)) for p in REPO_ROOT.glob("docs/*.md"))]
FENCE = re.compile(r"^```(\w*)([^\n]*)\n(.*?)^```", re.S | re.M)
MARK = re.compile(r"<!--\s*not run here:\s*(.+?)\s*-->")
# Size overrides appended to each command of the template (its first word): small and quick, the
# defaults otherwise. A resume (ckpt_path=) trains one epoch more than the run it resumes.
TRAIN_SIZE = ["trainer.max_epochs=1"]
RESUME_SIZE = ["trainer.max_epochs=2"]
SEARCH_SIZE = ["hydra.sweeper.n_trials=2"]
BATCH_SIZE = ["trainer.max_epochs=10"]  # a batch job lives long enough to be signalled
BATCH_SCRIPT = "scripts/sbatch_cpu.sh"  # its arguments go to the training command
# `make test` (and its tiers) is what runs this harness, and .ci/run runs each of them itself: the
# lines the harness leaves to CI, and says so in its output
THE_SUITES = ("make test",)
TIMEOUT = 1800  # seconds per page


@dataclass(frozen=True)
class Block:
    page: str
    line: int
    language: str
    text: str
    file: str | None  # the path a file block is written to
    mark: str | None  # why it is not run here

    @property
    def name(self) -> str:
        return f"{self.page}:{self.line}"


def blocks(page: str) -> list[Block]:
    text = (REPO_ROOT / page).read_text()
    found = []
    for match in FENCE.finditer(text):
        language, info, body = match.groups()
        file = re.search(r"file=(\S+)", info)
        before = text[: match.start()].rstrip().rsplit("\n", 1)[-1]
        mark = MARK.search(before)
        found.append(
            Block(
                page,
                text.count("\n", 0, match.start()) + 1,
                language,
                body,
                file.group(1) if file else None,
                mark.group(1) if mark else None,
            )
        )
    return found


ALL = [block for page in PAGES for block in blocks(page)]
SHELL = [b for b in ALL if b.language in ("bash", "sh", "shell") and b.file is None]
FILES = [b for b in ALL if b.file is not None]


def logical_lines(script: str) -> list[str]:
    """The script's lines with backslash continuations joined."""
    return script.replace("\\\n", " ").splitlines()


def size_overrides(command: str) -> list[str]:
    """What the harness appends to one command (empty for anything but the template's)."""
    words = shlex.split(command, comments=True) if command.strip() else []
    if not words:
        return []
    if words[0] == "sigmoidf1-train" or "sigmoidf1.train" in words:
        if any(w.startswith("ckpt_path=") for w in words):
            return RESUME_SIZE
        searches = any(w.startswith("hparams_search=") for w in words)
        return TRAIN_SIZE + (SEARCH_SIZE if searches else [])
    if words[:2] == ["make", "train"]:
        return [f"ARGS={' '.join(TRAIN_SIZE)}"]
    return []


def with_sizes(script: str) -> str:
    """``script`` with the size overrides appended to each template command (before a trailing
    comment or ``&``); every other character as written."""
    lines = []
    for line in logical_lines(script):
        if line.strip().startswith(THE_SUITES):
            lines.append(f"echo 'left to .ci/run, which runs it: {line.strip()}'")
            continue
        if BATCH_SCRIPT in line:  # also inside $(...): the sizes go right after the script
            lines.append(line.replace(BATCH_SCRIPT, f"{BATCH_SCRIPT} {' '.join(BATCH_SIZE)}"))
            continue
        overrides = size_overrides(line)
        if overrides:
            code, hash_, comment = line.partition(" #")
            background = code.rstrip().endswith("&")
            code = code.rstrip().removesuffix("&").rstrip()
            line = f"{code} {' '.join(overrides)}{' &' if background else ''}"
            line += f" #{comment}" if hash_ else ""
        lines.append(line)
    return "\n".join(lines) + "\n"


def fresh_copy(root: Path) -> Path:
    """The repository's tracked (and untracked, not ignored) files under ``root``, with the
    documentation's file blocks written in."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, root / name)
    for block in FILES:
        (root / block.file).parent.mkdir(parents=True, exist_ok=True)
        (root / block.file).write_text(block.text)
    # `make train` finds this environment installed (`make install` made it) and leaves it so: the
    # copy's pyproject.toml is older than the environment's install stamp
    (root / ".venv").symlink_to(Path(sys.prefix), target_is_directory=True)
    os.utime(root / "pyproject.toml", (0, 0))
    return root


def environment(clone: Path) -> dict[str, str]:
    """This environment's commands (``sigmoidf1-*`` ...) running the clone's code and configs."""
    bin_dir = str(Path(sys.executable).parent)
    return {
        **os.environ,
        "PATH": os.pathsep.join([bin_dir, os.environ.get("PATH", "")]),
        "PYTHONPATH": os.pathsep.join([str(clone / "src"), str(clone)]),
        "SIGMOIDF1_ROOT": str(clone),
        "PIP_DRY_RUN": "1",  # `pip install ...` lines resolve, but leave this environment as it is
    }


def test_every_page_is_read_and_every_file_block_names_a_path():
    assert SHELL, "no shell blocks found: is the fence pattern right?"
    for block in FILES:
        assert not Path(block.file).is_absolute() and ".." not in Path(block.file).parts, block


def test_the_marked_blocks_say_why():
    """The blocks the harness does not run, with their reasons (printed with -s)."""
    marked = [b for b in SHELL if b.mark]
    for block in marked:
        print(f"not run here: {block.name}: {block.mark}")
        assert len(block.mark) > 10, f"{block.name}: say why it cannot run here"


def run_page(page: str, clone: Path) -> None:
    """The page's blocks, in order, in one shell (what one block exports, the next one sees, as in
    a reader's terminal); a line before each block names it in the output."""
    parts = [
        f"echo '### {block.name}'\n{with_sizes(block.text)}"
        for block in SHELL
        if block.page == page and not block.mark
    ]
    script = "\n".join(parts)
    result = subprocess.run(
        ["bash", "-e", "-c", script],
        cwd=clone,
        env=environment(clone),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    blocks_run = re.findall(r"^### (\S+)$", result.stdout, re.M)
    assert result.returncode == 0, (
        f"{blocks_run[-1] if blocks_run else page} exited {result.returncode}\n--- ran\n{script}"
        f"\n--- stdout\n{result.stdout[-3000:]}\n--- stderr\n{result.stderr[-5000:]}"
    )


def cluster_unavailable() -> str | None:
    """Why the local SLURM cluster of docs/cluster.md cannot run here (None when it can)."""
    missing = [tool for tool in ("slurmctld", "slurmd", "munged") if not shutil.which(tool)]
    if missing:
        return f"SLURM is not installed ({', '.join(missing)}): apt-get install slurm-wlm munge"
    if os.geteuid() != 0:
        return "the local SLURM cluster (scripts/slurm_local.sh) runs its daemons as root"
    return None


RUNNABLE = [page for page in PAGES if any(b.page == page and not b.mark for b in SHELL)]
# the cluster page shares the local cluster with tests/test_cluster.py: one worker runs both
GROUP = {"docs/cluster.md": "slurm"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "page",
    [pytest.param(p, marks=pytest.mark.xdist_group(GROUP.get(p, p))) for p in RUNNABLE],
)
def test_the_page_runs_as_written(page, tmp_path):
    if page == "docs/cluster.md" and cluster_unavailable():
        pytest.skip(f"{page}: {cluster_unavailable()}")
    run_page(page, fresh_copy(tmp_path / "clone"))
