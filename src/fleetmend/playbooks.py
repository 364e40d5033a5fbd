"""The ansible-runner adapter: run a playbook, stream its events, return a typed outcome.

The only module that imports ansible_runner. A failed playbook is an outcome,
not an exception; each failed task is reported with its host, task name and the
error message. Every run keeps its inputs, event stream and result in its own
directory (ansible-runner's private data dir) under the fleetmend run.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from fleetmend.errors import FleetmendError

REPO_PLAYBOOKS = Path(__file__).resolve().parents[2] / "playbooks"


class Outcome(StrEnum):
    SUCCESSFUL = "successful"
    FAILED = "failed"
    TIMEOUT = "timeout"
    CANCELED = "canceled"


@dataclass(frozen=True)
class TaskEvent:
    """What a progress display needs from one ansible-runner event."""

    host: str
    task: str
    status: str
    """ok, changed, failed, unreachable, skipped, or start (a task began)."""


@dataclass(frozen=True)
class TaskFailure:
    host: str
    task: str
    message: str


@dataclass
class PlaybookResult:
    outcome: Outcome
    rc: int
    artifacts: Path
    ok: dict[str, int] = field(default_factory=dict)
    changed: dict[str, int] = field(default_factory=dict)
    failures: list[TaskFailure] = field(default_factory=list)
    unreachable: list[str] = field(default_factory=list)
    stats_data: dict[str, Any] = field(default_factory=dict)
    """Custom stats (`ansible.builtin.set_stats`), e.g. a provider's new host key."""

    def failed_hosts(self) -> list[str]:
        return sorted({f.host for f in self.failures} | set(self.unreachable))


def playbook_path(name: str) -> Path:
    """A shipped playbook (`converge.yml`, `reimage.yml`); FLEETMEND_PLAYBOOKS overrides the dir."""
    base = Path(os.environ.get("FLEETMEND_PLAYBOOKS", REPO_PLAYBOOKS))
    path = base / name
    if not path.is_file():
        raise FleetmendError(
            f"playbook {path} not found", "set FLEETMEND_PLAYBOOKS to your playbooks directory"
        )
    return path


def _message(res: dict[str, Any]) -> str:
    for key in ("msg", "stderr", "module_stderr", "reason"):
        value = res.get(key)
        if value:
            text = str(value).strip()
            return text if len(text) < 600 else text[:600] + "..."
    return "failed (no message)"


def run_playbook(
    playbook: Path,
    inventory: dict[str, Any],
    directory: Path,
    *,
    extravars: dict[str, Any] | None = None,
    on_event: Callable[[TaskEvent], None] | None = None,
    timeout: int | None = None,
) -> PlaybookResult:
    """Run `playbook` against `inventory` (an Ansible YAML inventory as data)."""
    import ansible_runner

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "inventory").mkdir(exist_ok=True)
    (directory / "inventory" / "hosts.yaml").write_text(yaml.safe_dump(inventory, sort_keys=False))
    result = PlaybookResult(outcome=Outcome.FAILED, rc=-1, artifacts=directory / "artifacts")

    def handle(event: dict[str, Any]) -> bool:
        kind = event.get("event", "")
        data = event.get("event_data", {})
        host, task = data.get("host", ""), data.get("task", "")
        status = {
            "runner_on_ok": "changed" if data.get("res", {}).get("changed") else "ok",
            "runner_on_failed": "failed",
            "runner_on_unreachable": "unreachable",
            "runner_on_skipped": "skipped",
        }.get(kind)
        if kind == "runner_on_failed" and not data.get("ignore_errors"):
            result.failures.append(TaskFailure(host, task, _message(data.get("res", {}))))
        elif kind == "runner_on_unreachable":
            result.unreachable.append(host)
            result.failures.append(TaskFailure(host, task, _message(data.get("res", {}))))
        elif kind == "playbook_on_stats":
            result.stats_data = dict(data.get("artifact_data") or {})
        if status and on_event is not None:
            on_event(TaskEvent(host, task, status))
        return True

    bin_dir = str(Path(sys.executable).parent)
    env = {
        "PATH": f"{bin_dir}:{os.environ.get('PATH', '')}",
        "ANSIBLE_HOST_KEY_CHECKING": "True",
        "ANSIBLE_NOCOLOR": "1",
        "ANSIBLE_RETRY_FILES_ENABLED": "False",
    }
    runner = ansible_runner.run(
        private_data_dir=str(directory),
        playbook=str(playbook),
        extravars=extravars or {},
        envvars=env,
        quiet=True,
        event_handler=handle,
        timeout=timeout,
    )
    result.rc = int(runner.rc if runner.rc is not None else -1)
    result.outcome = (
        Outcome(runner.status) if runner.status in Outcome.__members__.values() else Outcome.FAILED
    )
    stats = runner.stats or {}
    result.ok = dict(stats.get("ok", {}))
    result.changed = dict(stats.get("changed", {}))
    return result
