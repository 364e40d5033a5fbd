"""The exception hierarchy and the stable exit codes.

Every error a user can cause is a `FleetmendError` carrying a message and a hint;
the CLI turns it into one line per problem and an exit code, with no traceback
unless `--debug` is given.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path


class ExitCode(IntEnum):
    """Stable exit codes, documented in the README."""

    OK = 0
    FAILED = 1  # an operation failed
    INPUT = 2  # usage or invalid input
    DRIFT = 3  # drift found
    HOSTS_FAILED = 4  # hosts failed or unreachable, or a run partly failed
    REFUSED = 5  # refused by a safety rule (floor, trip wire, lock, missing --yes)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one input: where it is, what is wrong, how to fix it.

    `place` is a line (`12`, `12:5`), a field path (`packages.nginx`) or both
    (`12: packages.nginx`); it may be empty when the whole file is at fault.
    """

    file: str
    place: str
    message: str
    hint: str = ""
    hosts: tuple[str, ...] = ()
    """The hosts the problem showed up for, when it depends on the host (rendering)."""

    def __str__(self) -> str:
        if not self.place:
            where = self.file
        elif self.place[0].isdigit():  # a line: file:12: ..., as compilers print it
            where = f"{self.file}:{self.place}"
        else:
            where = f"{self.file}: {self.place}"
        text = f"{where}: {self.message}"
        if len(self.hosts) == 1:
            text += f" (for host {self.hosts[0]})"
        elif self.hosts:
            text += f" (for {len(self.hosts)} hosts: {', '.join(self.hosts)})"
        if self.hint:
            text += f" (hint: {self.hint})"
        return text


def merge_hosts(problems: list[Problem]) -> list[Problem]:
    """One problem per file, place and message, naming every host it showed up for."""
    merged: dict[tuple[str, str, str, str], list[str]] = {}
    for p in problems:
        hosts = merged.setdefault((p.file, p.place, p.message, p.hint), [])
        hosts.extend(h for h in p.hosts if h not in hosts)
    return [Problem(*key, hosts=tuple(hosts)) for key, hosts in merged.items()]


def display_path(path: Path | str) -> str:
    """A path as the user should see it: relative to the working directory when inside it."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(p)


class FleetmendError(Exception):
    """Root of every error fleetmend raises on purpose."""

    exit_code: ExitCode = ExitCode.FAILED

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        """The error as the lines a user reads."""
        text = self.message
        if self.hint:
            text += f" (hint: {self.hint})"
        return [text]


class InputError(FleetmendError):
    """Bad input: files, templates, inventories, arguments. Exit code 2.

    Carries every problem found, so `validate` can list them all at once.
    """

    exit_code = ExitCode.INPUT

    def __init__(self, problems: list[Problem]) -> None:
        if not problems:
            raise ValueError("InputError needs at least one problem")
        self.problems = list(problems)
        first = self.problems[0]
        super().__init__(str(first))

    def lines(self) -> list[str]:
        return [str(p) for p in self.problems]

    @classmethod
    def one(cls, file: str, place: str, message: str, hint: str = "") -> InputError:
        return cls([Problem(file, place, message, hint)])


class UsageError(FleetmendError):
    """A command was called wrongly (unknown name, conflicting options). Exit code 2."""

    exit_code = ExitCode.INPUT
