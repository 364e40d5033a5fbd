"""YAML files into validated models, with the file, line and field in every error.

PyYAML's safe loader is extended in two ways: a mapping with a duplicate key is
an error (YAML says so, PyYAML silently keeps the last one), and every node's
line is recorded by its path, so a pydantic error on `packages.nginx` can be
reported as `images/web.yaml:14: packages.nginx: ...`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from fleetmend.errors import InputError, Problem, display_path

Loc = tuple[str | int, ...]
M = TypeVar("M", bound=BaseModel)


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys."""


def _construct_mapping(loader: _StrictLoader, node: yaml.MappingNode) -> dict[Any, Any]:
    loader.flatten_mapping(node)
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a plain value", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"duplicate key {key!r} (first defined on line {seen[key]})",
                key_node.start_mark,
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=True)


_StrictLoader.add_constructor(
    yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG,
    _construct_mapping,
)


class YamlDocument:
    """A parsed YAML file: its data and the line of each value, by path."""

    def __init__(self, path: Path, data: Any, lines: dict[Loc, int]) -> None:
        self.path = path
        self.data = data
        self.lines = lines

    @property
    def name(self) -> str:
        return display_path(self.path)

    def line_of(self, loc: Loc) -> int | None:
        """The line of the deepest node on `loc` that exists in the file."""
        for end in range(len(loc), -1, -1):
            line = self.lines.get(loc[:end])
            if line is not None:
                return line
        return None

    def place(self, loc: Loc) -> str:
        """`line: field.path` for a problem at `loc`."""
        line = self.line_of(loc)
        field = format_loc(loc)
        if line is None:
            return field
        return f"{line}: {field}" if field else str(line)


def format_loc(loc: Loc) -> str:
    """('packages', 'nginx') -> 'packages.nginx'; ('users', 0) -> 'users[0]'."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _record_lines(node: yaml.Node, loc: Loc, lines: dict[Loc, int]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode):
                child = (*loc, key_node.value)
                _record_lines(value_node, child, lines)
                lines[child] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _record_lines(item, (*loc, i), lines)


def parse_yaml(path: Path) -> YamlDocument:
    """Parse one YAML file, raising `InputError` with the line on any syntax problem."""
    name = display_path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError.one(name, "", "file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError.one(name, "", f"cannot read: {exc}") from None
    try:
        loader = _StrictLoader(text)
        try:
            node = loader.get_single_node()
            data = loader.construct_document(node) if node is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        place = f"{mark.line + 1}:{mark.column + 1}" if mark else ""
        what = exc.problem or exc.context or "invalid YAML"
        raise InputError.one(name, place, f"invalid YAML: {what}", _yaml_hint(what)) from None
    except yaml.YAMLError as exc:
        raise InputError.one(name, "", f"invalid YAML: {exc}") from None
    lines: dict[Loc, int] = {}
    if node is not None:
        _record_lines(node, (), lines)
    return YamlDocument(path, data, lines)


def _yaml_hint(what: str) -> str:
    if "duplicate key" in what:
        return "each key may appear once in a mapping; merge the two entries"
    if "tab" in what or "'\\t'" in what:
        return "indent with spaces, not tabs"
    if "mapping values are not allowed" in what:
        return "a value containing ': ' must be quoted"
    return "check the indentation and quoting around this place"


def validation_problems(doc: YamlDocument, exc: ValidationError, prefix: Loc = ()) -> list[Problem]:
    """Turn a pydantic error into one `Problem` per error, with line and field path."""
    problems = []
    for err in exc.errors(include_url=False):
        loc: Loc = (*prefix, *_clean_loc(err["loc"]))
        message = str(err["msg"])
        hint = ""
        kind = err["type"]
        if kind == "extra_forbidden":
            message = f"unknown field '{loc[-1]}'"
            hint = "check the spelling; see the README's file formats for the known fields"
        elif kind == "missing":
            message = "required field missing"
        ctx = err.get("ctx") or {}
        if "hint" in ctx:
            hint = str(ctx["hint"])
        if message.startswith("Value error, "):
            message = message.removeprefix("Value error, ")
        problems.append(Problem(doc.name, doc.place(loc), message, hint))
    return problems


def _clean_loc(loc: tuple[int | str, ...]) -> Loc:
    """Drop pydantic's union/function tags (e.g. 'function-after[...]') from a location."""
    return tuple(
        p for p in loc if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))
    )


def load_model(path: Path, model: type[M], *, context: Mapping[str, Any] | None = None) -> M:
    """Parse `path` and validate it as `model`; every problem names file, line and field."""
    doc = parse_yaml(path)
    return validate_document(doc, model, context=context)


def validate_document(
    doc: YamlDocument, model: type[M], *, context: Mapping[str, Any] | None = None
) -> M:
    if not isinstance(doc.data, dict):
        kind = "empty" if doc.data is None else f"a {type(doc.data).__name__}"
        raise InputError.one(doc.name, "1", f"expected a mapping at the top level, found {kind}")
    try:
        return model.model_validate(doc.data, context=dict(context or {}))
    except ValidationError as exc:
        raise InputError(validation_problems(doc, exc)) from None
