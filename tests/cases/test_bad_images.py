"""Every bad image under bad-images/ gives exactly the problem lines its header expects.

A case is one YAML file whose `# expect:` comment lines are the whole output for
that file, dropped into a copy of the example images (so it may extend them).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleetmend.catalog import Catalog

CASES = sorted((Path(__file__).parent / "bad-images").glob("*.yaml"))


def expected(case: Path) -> list[str]:
    return [
        line.removeprefix("# expect: ")
        for line in case.read_text().splitlines()
        if line.startswith("# expect: ")
    ]


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_bad_image(case: Path, images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(images.parent)
    shutil.copy(case, images / case.name)
    catalog = Catalog.scan(images)
    lines = [str(p) for p in catalog.problems]
    assert lines == expected(case)


def test_every_case_expects_something() -> None:
    assert len(CASES) >= 10
    for case in CASES:
        assert expected(case), f"{case.name} has no '# expect:' line"
