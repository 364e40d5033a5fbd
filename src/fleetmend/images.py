"""An image: the declaration of what a server of one kind must be.

These are the models of `images/NAME.yaml` as written, before `extends` is
folded in (see `catalog.py` for resolution and the digest). Every model forbids
unknown fields, and every value YAML could silently mangle is refused with a
hint instead: an unquoted `1.10` is the number 1.1, an unquoted `0644` is 420.
"""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _text(value: Any) -> Any:
    """Accept strings and integers (lossless); refuse floats, whose digits YAML may drop."""
    if isinstance(value, bool):
        raise PydanticCustomError(
            "yaml_bool",
            "{value} is a YAML boolean (yes, no, on, off, true, false), not text",
            {"value": str(value).lower(), "hint": "quote it"},
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        raise PydanticCustomError(
            "unquoted_number",
            "unquoted {value} is a number in YAML and may lose digits (1.10 reads as 1.1)",
            {"value": value, "hint": 'quote it, e.g. "1.10"'},
        )
    return value


Text = Annotated[str, BeforeValidator(_text)]
"""A string that may be written as an integer, never as a float or boolean."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+@-]*$")


def _name(value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(
            f"{value!r} is not a valid name (letters, digits, '.', '_', '-', '+', '@')"
        )
    return value


Name = Annotated[str, AfterValidator(_name)]


def _mode(value: Any) -> Any:
    if isinstance(value, int) and not isinstance(value, bool):
        raise PydanticCustomError(
            "unquoted_mode",
            "mode must be a quoted octal string; unquoted {value} is a YAML number",
            {"value": value, "hint": 'write it quoted, e.g. mode: "0644"'},
        )
    return value


def _octal(value: str) -> str:
    if not re.fullmatch(r"0?[0-7]{3}|[0-7]{4}", value):
        raise PydanticCustomError(
            "bad_mode",
            "{value} is not an octal file mode",
            {"value": repr(value), "hint": 'use 3 or 4 octal digits, e.g. "0644" or "2775"'},
        )
    return value.zfill(4)


Mode = Annotated[str, BeforeValidator(_mode), AfterValidator(_octal)]


def _abs_path(value: str) -> str:
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    parts = value.split("/")
    if ".." in parts or "." in parts[1:] or "//" in value:
        raise ValueError(f"{value!r} is not a normalised path (no '.', '..' or '//')")
    return value.rstrip("/") or "/"


AbsPath = Annotated[str, AfterValidator(_abs_path)]

_OPS = ("==", ">=", "<=", "!=", ">", "<", "=")
_VERSION = re.compile(r"^[A-Za-z0-9.+~:-]+\*?$")


def _constraint(value: str) -> str:
    """`any`, `absent`, or comma-separated clauses `OP VERSION` (a bare version means ==).

    A trailing `*` matches a prefix: `1.22.*` is any 1.22 release.
    """
    if value.strip() in ("any", "absent"):
        return value.strip()
    clauses = [c.strip() for c in value.split(",")]
    for clause in clauses:
        version = clause
        for op in _OPS:
            if clause.startswith(op):
                version = clause[len(op) :].strip()
                break
        if not version or not _VERSION.match(version):
            raise PydanticCustomError(
                "bad_constraint",
                "{value} is not a version constraint",
                {"value": repr(value), "hint": "use any, absent, a version, or e.g. '>=1.22, <2'"},
            )
    return ", ".join(clauses)


Constraint = Annotated[str, BeforeValidator(_text), AfterValidator(_constraint)]


class BaseOS(Strict):
    """The OS a host must run, as os-release names it."""

    id: Name
    version_id: Text


class FileSpec(Strict):
    """A managed file: inline `content` or a Jinja2 `template` under images/templates/."""

    content: str | None = None
    template: str | None = None
    mode: Mode = "0644"
    owner: Name = "root"
    group: Name = "root"

    @model_validator(mode="after")
    def _one_source(self) -> FileSpec:
        if (self.content is None) == (self.template is None):
            raise PydanticCustomError(
                "file_source",
                "a file needs exactly one of 'content' or 'template'",
                {"hint": "inline text goes in content, a Jinja2 file name in template"},
            )
        return self


class ServiceSpec(Strict):
    """A service's wanted state. Without systemd on the host (containers, the lab),
    `process` is the process name that shows the service running (default: its name).
    """

    state: Literal["running", "stopped"] = "running"
    enabled: bool = True
    process: Name | None = None


class UserSpec(Strict):
    uid: int | None = None
    group: Name | None = None
    groups: list[Name] = Field(default_factory=list)
    home: AbsPath | None = None
    shell: AbsPath | None = None
    system: bool = False
    state: Literal["present", "absent"] = "present"


class GroupSpec(Strict):
    gid: int | None = None
    system: bool = False
    state: Literal["present", "absent"] = "present"


class ReseedSpec(Strict):
    """How a volume's data is copied from a healthy peer.

    `files` copies the volume's tree (minus `exclude`); `command` runs `dump` on
    the source peer and pipes it into `restore` on the rebuilt host, or, without
    `dump`, runs `restore` alone to fetch from the source with the data's own tool
    (`pg_basebackup -h {{ source.address }}`). Both are Jinja2 templates.
    """

    strategy: Literal["files", "command"] = "files"
    dump: str | None = None
    restore: str | None = None
    compare: Literal["manifest", "position"] = "manifest"
    """How healthy copies are told apart: `manifest`, content manifests (the majority
    wins with three or more copies; scrub finds silent corruption), then position;
    `position` only, for data whose healthy copies differ on disk (a database's
    files: its own tool and checksums verify it); scrub leaves such a volume out."""

    @model_validator(mode="after")
    def _commands(self) -> ReseedSpec:
        has = self.dump is not None, self.restore is not None
        if self.strategy == "command" and self.restore is None:
            raise PydanticCustomError(
                "reseed_commands",
                "strategy 'command' needs 'restore'",
                {
                    "hint": "restore runs on the rebuilt host and writes into $FLEETMEND_STAGING, "
                    "reading what dump wrote on the source, or fetching from "
                    "{{ source.address }} itself"
                },
            )
        if self.strategy == "files" and any(has):
            raise PydanticCustomError(
                "reseed_commands",
                "'dump' and 'restore' only apply to strategy 'command'",
                {"hint": "set strategy: command, or drop them"},
            )
        return self


class HooksSpec(Strict):
    before_reseed: str | None = None
    after_reseed: str | None = None


class VolumeSpec(Strict):
    """A data volume: replicated data that a rebuild does not bring back by itself."""

    path: AbsPath
    owner: Name = "root"
    group: Name = "root"
    mode: Mode = "0750"
    position: str | None = None
    """Prints the copy's replication position; runs in the volume's directory."""
    health: str | None = None
    """Exit 0 when the copy is healthy. Runs in the volume's directory, or in the staging
    directory when a `command` restore is checked before its swap: use relative paths."""
    reseed: ReseedSpec = Field(default_factory=ReseedSpec)
    hooks: HooksSpec = Field(default_factory=HooksSpec)
    exclude: list[str] = Field(default_factory=list)

    @property
    def staging(self) -> str:
        """Where a re-seed builds the new copy: next to the volume, on the same filesystem."""
        path = PurePosixPath(self.path)
        return str(path.parent / f".{path.name}.fleetmend-staging")


SysctlValue = Annotated[str, BeforeValidator(_text)]


class ImageSpec(Strict):
    """`images/NAME.yaml` as written; `extends` not yet folded in."""

    name: Name
    version: Text
    description: str = ""
    extends: Name | None = None
    os: BaseOS | None = None
    packages: dict[Name, Constraint] = Field(default_factory=dict)
    files: dict[AbsPath, FileSpec] = Field(default_factory=dict)
    services: dict[Name, ServiceSpec] = Field(default_factory=dict)
    sysctls: dict[str, SysctlValue] = Field(default_factory=dict)
    users: dict[Name, UserSpec] = Field(default_factory=dict)
    groups: dict[Name, GroupSpec] = Field(default_factory=dict)
    volumes: dict[Name, VolumeSpec] = Field(default_factory=dict)


MERGED_SECTIONS = ("packages", "files", "services", "sysctls", "users", "groups", "volumes")
"""Sections merged key by key along `extends`; the child's entry replaces the parent's."""


class Image(Strict):
    """A resolved image: `extends` folded in, templates read, digest computed."""

    name: str
    version: str
    description: str
    lineage: list[str]
    digest: str
    os: BaseOS | None
    packages: dict[str, str]
    files: dict[str, FileSpec]
    services: dict[str, ServiceSpec]
    sysctls: dict[str, str]
    users: dict[str, UserSpec]
    groups: dict[str, GroupSpec]
    volumes: dict[str, VolumeSpec]
    templates: dict[str, str]
    """Source of every template the image uses, includes too, by name."""
