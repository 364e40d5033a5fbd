"""Resolution along `extends`, and the digest: stable across machines, sensitive to change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fleetmend.catalog import Catalog, resolve_ref
from fleetmend.errors import InputError
from tests.conftest import write


def test_examples_resolve_without_problems(repo: Path) -> None:
    catalog = Catalog.load(repo / "images")
    assert {"base", "web", "kv", "blobstore", "postgres"} <= set(catalog.names())
    for name in ("web", "kv", "blobstore", "postgres"):
        assert catalog.resolve(name).lineage == ["base", name]


def test_extends_merges_sections_key_by_key(images: Path) -> None:
    write(
        images / "child.yaml",
        """
        name: child
        version: "2.10"
        extends: web
        packages:
          telnetd: any          # overrides base's 'absent'
          jq: any
        services:
          nginx: {state: stopped, enabled: false}
        sysctls:
          vm.swappiness: 5
        """,
    )
    catalog = Catalog.load(images)
    child, web, base = (catalog.resolve(n) for n in ("child", "web", "base"))
    assert child.lineage == ["base", "web", "child"]
    assert child.version == "2.10"  # a string: 2.10 is not 2.1
    assert child.packages["telnetd"] == "any"
    assert child.packages["jq"] == "any"
    assert child.packages["nginx"] == web.packages["nginx"]  # inherited from web
    assert child.packages["openssh-server"] == "any"  # inherited from base through web
    assert child.services["nginx"].state == "stopped"
    assert child.services["ssh"] == base.services["ssh"]
    assert child.sysctls["vm.swappiness"] == "5"
    assert child.sysctls["net.core.somaxconn"] == "4096"
    assert set(child.files) == set(web.files)
    assert child.volumes == web.volumes
    assert child.os == base.os


def test_child_os_overrides_parent(images: Path) -> None:
    write(
        images / "trixie.yaml",
        """
        name: trixie
        version: "1"
        extends: base
        os: {id: debian, version_id: 13}
        """,
    )
    image = Catalog.load(images).resolve("trixie")
    assert (image.os and image.os.version_id) == "13"


def test_digest_is_the_same_for_the_same_image_in_another_place(repo: Path, tmp_path: Path) -> None:
    copy = tmp_path / "elsewhere" / "images"
    shutil.copytree(repo / "images", copy)
    here, there = Catalog.load(repo / "images"), Catalog.load(copy)
    for name in here.names():
        assert here.resolve(name).digest == there.resolve(name).digest


def test_digest_changes_with_an_included_template(images: Path) -> None:
    before = {n: Catalog.load(images).resolve(n).digest for n in ("base", "web", "kv")}
    header = images / "templates" / "partials" / "managed-header.j2"
    header.write_text(header.read_text() + "# one more line\n")
    after = {n: Catalog.load(images).resolve(n).digest for n in ("base", "web", "kv")}
    assert all(before[n] != after[n] for n in before)


def test_digest_changes_only_for_images_using_a_changed_template(images: Path) -> None:
    before = {n: Catalog.load(images).resolve(n).digest for n in ("base", "web", "kv")}
    site = images / "templates" / "nginx-site.conf.j2"
    site.write_text(site.read_text().replace("index index.html;", "index index.htm;"))
    after = {n: Catalog.load(images).resolve(n).digest for n in ("base", "web", "kv")}
    assert before["web"] != after["web"]
    assert before["base"] == after["base"]
    assert before["kv"] == after["kv"]


def test_digest_changes_with_a_parent_but_not_with_a_description(images: Path) -> None:
    before = Catalog.load(images).resolve("web").digest
    base = images / "base.yaml"
    base.write_text(base.read_text().replace("description: Debian 12", "description: A Debian 12"))
    assert Catalog.load(images).resolve("web").digest == before
    base.write_text(base.read_text().replace("vm.swappiness: 10", "vm.swappiness: 11"))
    assert Catalog.load(images).resolve("web").digest != before


def test_template_syntax_error_names_template_and_line(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    (images / "templates" / "motd.j2").write_text("hello\n{% if x %}\nno end\n")
    catalog = Catalog.scan(images)
    (problem,) = [str(p) for p in catalog.problems]
    assert problem.startswith(
        "images/templates/motd.j2:3: template syntax error: Unexpected end of template."
    )
    assert problem.endswith("(hint: check the {{ }} and {% %} pairs near this line)")
    with pytest.raises(InputError):
        catalog.resolve("web")


def test_include_of_missing_template_names_the_including_template(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    (images / "templates" / "motd.j2").write_text('{% include "nope.j2" %}\n')
    problems = [str(p) for p in Catalog.scan(images).problems]
    assert problems == [
        "images/templates/motd.j2: template 'nope.j2' not found in images/templates "
        "(hint: template names are relative to images/templates/)"
    ]


def test_cycle_through_two_images_is_reported_for_each(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    write(images / "a.yaml", 'name: a\nversion: "1"\nextends: b\n')
    write(images / "b.yaml", 'name: b\nversion: "1"\nextends: a\n')
    problems = [str(p) for p in Catalog.scan(images).problems]
    hint = " (hint: an image cannot extend itself)"
    assert sorted(problems) == [
        "images/a.yaml:3: extends: extends cycle: b -> a -> b" + hint,
        "images/b.yaml:3: extends: extends cycle: a -> b -> a" + hint,
    ]


def test_broken_parent_is_named_in_the_child(images: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(images.parent)
    base = images / "base.yaml"
    base.write_text(base.read_text().replace('version: "1.4"', "version: 1.40"))
    problems = [str(p) for p in Catalog.scan(images).problems]
    assert problems[0].startswith("images/base.yaml:3: version: unquoted 1.4 is a number")
    assert "images/web.yaml:5: extends: parent image 'base' has errors (listed separately)" in (
        problems
    )


def test_unknown_image(images: Path) -> None:
    with pytest.raises(InputError) as exc:
        Catalog.load(images).resolve("wbe")
    assert "unknown image 'wbe'" in exc.value.lines()[0]
    assert "known images: base, blobstore, kv, postgres, web" in exc.value.lines()[0]


def test_resolve_ref_reads_another_version_from_its_own_directory(
    images: Path, tmp_path: Path
) -> None:
    old = tmp_path / "release-41" / "images"
    shutil.copytree(images, old)
    web = old / "web.yaml"
    web.write_text(web.read_text().replace('version: "2.10"', 'version: "2.9"'))
    _, image = resolve_ref(str(web), images)
    assert image.version == "2.9"
    _, current = resolve_ref("web", images)
    assert current.version == "2.10"
    assert image.digest != current.digest


def test_missing_images_directory(tmp_path: Path) -> None:
    with pytest.raises(InputError) as exc:
        Catalog.load(tmp_path / "nope")
    assert "images directory not found" in exc.value.lines()[0]
