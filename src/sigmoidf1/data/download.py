"""Download a file once, verify it, and never leave a half-written file behind.

Integrity strings use npm's Subresource-Integrity form ``"<algorithm>-<base64 digest>"``, e.g.
``"sha512-WLky..."``.
"""

from __future__ import annotations

import base64
import hashlib
import shutil
import urllib.request
from pathlib import Path

from sigmoidf1.utils.errors import ConfigError, DataError
from sigmoidf1.utils.files import atomic_path
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def file_integrity(path: str | Path, algorithm: str = "sha512") -> str:
    """``"<algorithm>-<base64 digest>"`` of a file's bytes."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return f"{algorithm}-{base64.b64encode(digest.digest()).decode()}"


def verify_integrity(path: str | Path, integrity: str, source: str | None = None) -> None:
    """Raise ``DataError`` naming the file (or ``source``, a download's address) when its digest
    differs from ``integrity``; ``ValueError`` for a malformed integrity string."""
    algorithm, _, expected = integrity.partition("-")
    if not expected or algorithm not in hashlib.algorithms_available:
        raise ConfigError(
            f"malformed integrity string {integrity!r}: expected '<algorithm>-<base64>'"
        )
    actual = file_integrity(path, algorithm)
    if actual == integrity:
        return
    if source is not None:
        raise DataError(
            f"{source} fails its integrity check (expected {integrity}, got {actual}): not the "
            "expected file, so nothing was saved"
        )
    raise DataError(
        f"{path} fails its integrity check (expected {integrity}, got {actual}): the file is "
        "corrupt or not the expected release; delete it to download it again"
    )


def download(
    url: str, destination: str | Path, integrity: str | None = None, timeout: float = 60.0
) -> Path:
    """Fetch ``url`` to ``destination`` unless it is already there; verify ``integrity`` if given.

    The bytes go to a uniquely named temporary file beside the destination, are verified, then
    renamed into place: an interrupted download leaves no file under the final name, and processes
    downloading the same file at once (DDP ranks) do not disturb each other.
    """
    destination = Path(destination)
    if destination.is_file():
        if integrity:
            verify_integrity(destination, integrity)
        return destination
    log.info(f"Downloading {url} -> {destination}")
    try:
        with atomic_path(destination) as tmp:
            with (
                urllib.request.urlopen(url, timeout=timeout) as response,
                open(tmp, "wb") as handle,
            ):
                shutil.copyfileobj(response, handle, 1 << 20)
            if integrity:
                verify_integrity(tmp, integrity, source=f"the download of {url}")
    except OSError as error:
        raise OSError(
            f"cannot download {url} to {destination} ({error}); fetch the file by other means and "
            "place it there"
        ) from error
    return destination
