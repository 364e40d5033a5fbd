"""Shared fixtures: the repository's example inputs, and scratch copies to break."""

from __future__ import annotations

import shutil
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def repo() -> Path:
    return REPO


@pytest.fixture
def images(tmp_path: Path) -> Path:
    """A scratch copy of the example images directory."""
    target = tmp_path / "images"
    shutil.copytree(REPO / "images", target)
    return target


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Run the test from `tmp_path`, so displayed paths are short and predictable."""
    monkeypatch.chdir(tmp_path)
    yield tmp_path


def write(path: Path, text: str) -> Path:
    """Write dedented `text` to `path`, creating parents."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path
