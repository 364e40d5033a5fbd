"""Where output goes and in which format: Rich tables for people, JSON for programs.

Results go to stdout, errors and progress to stderr, so `--format json | jq`
always reads clean JSON.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterable, Sequence
from enum import StrEnum
from typing import Any

from rich.console import Console
from rich.table import Table

# Piped output is read by grep and people with wide terminals: do not fold it at 80.
_PIPED_WIDTH = None if sys.stdout.isatty() else 160
out = Console(soft_wrap=True, width=_PIPED_WIDTH)
err = Console(stderr=True, soft_wrap=True, width=None if sys.stderr.isatty() else 160)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def print_json(data: Any) -> None:
    """Stable, pretty JSON on stdout (never through Rich's markup)."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", box=None, pad_edge=False)
    for column in columns:
        t.add_column(column, overflow="fold")
    for row in rows:
        t.add_row(*("" if v is None else str(v) for v in row))
    return t


def short(digest: str) -> str:
    return digest[:12]
