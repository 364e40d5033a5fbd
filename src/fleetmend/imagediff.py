"""What changes between two resolved images (two images, or two versions of one)."""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from fleetmend.images import MERGED_SECTIONS, Image


class ChangeKind(StrEnum):
    ADDED = "added"
    REMOVED = "removed"
    CHANGED = "changed"


@dataclass(frozen=True)
class Change:
    section: str
    key: str
    kind: ChangeKind
    before: Any
    after: Any


@dataclass(frozen=True)
class ImageDiff:
    a: str
    b: str
    digest_a: str
    digest_b: str
    changes: list[Change] = field(default_factory=list)
    template_diffs: dict[str, str] = field(default_factory=dict)
    """Unified diff of each template whose source differs, by template name."""

    @property
    def same(self) -> bool:
        return self.digest_a == self.digest_b


def _plain(value: Any) -> Any:
    return value.model_dump(mode="json") if hasattr(value, "model_dump") else value


def _compare(section: str, a: dict[str, Any], b: dict[str, Any]) -> list[Change]:
    changes = []
    for key in sorted(set(a) | set(b)):
        before = _plain(a[key]) if key in a else None
        after = _plain(b[key]) if key in b else None
        if key not in a:
            changes.append(Change(section, key, ChangeKind.ADDED, None, after))
        elif key not in b:
            changes.append(Change(section, key, ChangeKind.REMOVED, before, None))
        elif before != after:
            changes.append(Change(section, key, ChangeKind.CHANGED, before, after))
    return changes


def _hashes(templates: dict[str, str]) -> dict[str, str]:
    return {
        n: "sha256:" + hashlib.sha256(s.encode()).hexdigest()[:12] for n, s in templates.items()
    }


def diff_images(a: Image, b: Image, *, label_a: str = "", label_b: str = "") -> ImageDiff:
    """Every difference from `a` to `b`, section by section, templates as unified diffs."""
    top = {
        "version": (a.version, b.version),
        "extends": (" -> ".join(a.lineage[:-1]), " -> ".join(b.lineage[:-1])),
        "os": (_plain(a.os), _plain(b.os)),
    }
    changes = [
        Change("image", key, ChangeKind.CHANGED, before, after)
        for key, (before, after) in top.items()
        if before != after
    ]
    for section in MERGED_SECTIONS:
        changes.extend(_compare(section, getattr(a, section), getattr(b, section)))
    changes.extend(_compare("templates", _hashes(a.templates), _hashes(b.templates)))
    template_diffs = {}
    for name in sorted(set(a.templates) | set(b.templates)):
        old, new = a.templates.get(name, ""), b.templates.get(name, "")
        if old != new:
            template_diffs[name] = "".join(
                difflib.unified_diff(
                    old.splitlines(keepends=True),
                    new.splitlines(keepends=True),
                    fromfile=f"a/{name}",
                    tofile=f"b/{name}",
                )
            )
    return ImageDiff(
        a=label_a or f"{a.name} {a.version}",
        b=label_b or f"{b.name} {b.version}",
        digest_a=a.digest,
        digest_b=b.digest,
        changes=changes,
        template_diffs=template_diffs,
    )
