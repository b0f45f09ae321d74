"""Atomic writes: the file appears whole under its name, with the permissions ``open()`` gives."""

from __future__ import annotations

import os
import stat

import pytest

from sigmoidf1.utils.files import atomic_path, atomic_write_text


def test_an_atomic_file_gets_the_mode_of_a_plain_file(tmp_path):
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    written = atomic_write_text(tmp_path / "atomic.txt", "x")
    mode = stat.S_IMODE(os.stat(written).st_mode)
    assert mode == stat.S_IMODE(os.stat(plain).st_mode)


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_path(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []
