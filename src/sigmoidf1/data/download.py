"""Download a file once, verify it, and never leave a half-written file behind.

Integrity strings use npm's Subresource-Integrity form ``"<algorithm>-<base64 digest>"``, e.g.
``"sha512-WLky..."``.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import urllib.request
from pathlib import Path

from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def file_integrity(path: str | Path, algorithm: str = "sha512") -> str:
    """``"<algorithm>-<base64 digest>"`` of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm}-{base64.b64encode(digest.digest()).decode()}"


def verify_integrity(path: str | Path, integrity: str) -> None:
    """Raise ``ValueError`` naming the file when its digest differs from ``integrity``."""
    algorithm, _, expected = integrity.partition("-")
    if not expected or algorithm not in hashlib.algorithms_available:
        raise ValueError(f"malformed integrity string {integrity!r}: expected '<algorithm>-<base64>'")
    actual = file_integrity(path, algorithm)
    if actual != integrity:
        raise ValueError(
            f"{path} fails its integrity check (expected {integrity}, got {actual}): the file is "
            "corrupt or not the expected release; delete it to download it again"
        )


def download(url: str, destination: str | Path, integrity: str | None = None, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination`` unless it is already there; verify ``integrity`` if given.

    The bytes go to a temporary file beside the destination, are verified, then renamed into place
    (atomic on one file system): an interrupted download leaves no file under the final name.
    """
    destination = Path(destination)
    if destination.is_file():
        if integrity:
            verify_integrity(destination, integrity)
        return destination
    destination.parent.mkdir(parents=True, exist_ok=True)
    tmp = destination.with_name(f".{destination.name}.{os.getpid()}.part")
    log.info(f"Downloading {url} -> {destination}")
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(tmp, "wb") as handle:
            shutil.copyfileobj(response, handle, 1 << 20)
        if integrity:
            verify_integrity(tmp, integrity)
        os.replace(tmp, destination)
    except OSError as error:
        raise OSError(
            f"cannot download {url} to {destination} ({error}); fetch the file by other means and "
            "place it there"
        ) from error
    finally:
        tmp.unlink(missing_ok=True)
    return destination
