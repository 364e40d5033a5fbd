"""YAML parsing: syntax errors and duplicate keys name the file and line."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetmend.errors import InputError
from fleetmend.images import ImageSpec
from fleetmend.loading import format_loc, load_model, parse_yaml
from tests.conftest import write


def problem_lines(exc: pytest.ExceptionInfo[InputError]) -> list[str]:
    return exc.value.lines()


def test_duplicate_key_names_both_lines(in_tmp: Path) -> None:
    write(
        in_tmp / "x.yaml",
        """
        name: x
        packages:
          nginx: any
          curl: any
          nginx: absent
        """,
    )
    with pytest.raises(InputError) as exc:
        parse_yaml(in_tmp / "x.yaml")
    assert problem_lines(exc) == [
        "x.yaml:5:3: invalid YAML: duplicate key 'nginx' (first defined on line 3) "
        "(hint: each key may appear once in a mapping; merge the two entries)"
    ]


def test_malformed_yaml_names_line_and_column(in_tmp: Path) -> None:
    write(in_tmp / "x.yaml", "name: x\nversion: [1,\n")
    with pytest.raises(InputError) as exc:
        parse_yaml(in_tmp / "x.yaml")
    (line,) = problem_lines(exc)
    assert line.startswith("x.yaml:3:1: invalid YAML: ")


def test_tab_indentation_gets_a_hint(in_tmp: Path) -> None:
    write(in_tmp / "x.yaml", "name: x\npackages:\n\tnginx: any\n")
    with pytest.raises(InputError) as exc:
        parse_yaml(in_tmp / "x.yaml")
    assert "x.yaml:3:1: invalid YAML" in exc.value.lines()[0]
    assert "hint: indent with spaces, not tabs" in exc.value.lines()[0]


def test_missing_file(in_tmp: Path) -> None:
    with pytest.raises(InputError) as exc:
        parse_yaml(in_tmp / "nope.yaml")
    assert exc.value.lines() == ["nope.yaml: file not found"]


def test_top_level_must_be_a_mapping(in_tmp: Path) -> None:
    write(in_tmp / "x.yaml", "- a\n- b\n")
    with pytest.raises(InputError) as exc:
        load_model(in_tmp / "x.yaml", ImageSpec)
    assert exc.value.lines() == ["x.yaml:1: expected a mapping at the top level, found a list"]


def test_every_validation_error_is_reported_with_its_line(in_tmp: Path) -> None:
    write(
        in_tmp / "x.yaml",
        """
        name: x
        version: "1"
        colour: blue
        services:
          nginx:
            state: sleeping
        """,
    )
    with pytest.raises(InputError) as exc:
        load_model(in_tmp / "x.yaml", ImageSpec)
    assert sorted(exc.value.lines()) == [
        "x.yaml:3: colour: unknown field 'colour' "
        "(hint: check the spelling; see the README's file formats for the known fields)",
        "x.yaml:6: services.nginx.state: Input should be 'running' or 'stopped'",
    ]


def test_line_map_records_nested_keys_and_list_items(tmp_path: Path) -> None:
    doc = parse_yaml(write(tmp_path / "x.yaml", "a:\n  b:\n    - 1\n    - 2\n"))
    assert doc.line_of(("a", "b", 1)) == 4
    assert doc.line_of(("a", "b", 7)) == 2  # falls back to the deepest existing node
    assert format_loc(("users", "u1", "groups", 0)) == "users.u1.groups[0]"
