"""Without what the lab needs, one clear message and nothing started."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetmend.lab import Lab
from fleetmend.lab.preflight import LabUnavailable, require_lab_support


def test_not_root_is_one_clear_message(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 1000)
    with pytest.raises(LabUnavailable) as exc:
        Lab(tmp_path).up([])
    assert exc.value.message == (
        "the lab needs root: it creates namespaces, overlay mounts and sshd processes"
    )
    assert exc.value.hint == "run it as root, e.g. sudo fleetmend lab up"
    assert not (tmp_path / "lab").exists()  # nothing half-started


def test_missing_tools_are_all_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("os.geteuid", lambda: 0)
    monkeypatch.setattr("shutil.which", lambda *a, **k: None)
    with pytest.raises(LabUnavailable) as exc:
        require_lab_support()
    assert "sshd (Debian package openssh-server)" in exc.value.message
    assert "unshare (Debian package util-linux)" in exc.value.message
