"""What changes between two images or two versions of one."""

from __future__ import annotations

from pathlib import Path

from fleetmend.catalog import Catalog
from fleetmend.imagediff import ChangeKind, diff_images


def test_same_image_has_no_changes(repo: Path) -> None:
    web = Catalog.load(repo / "images").resolve("web")
    result = diff_images(web, web)
    assert result.same and not result.changes and not result.template_diffs


def test_two_versions_of_an_image(images: Path) -> None:
    old = Catalog.load(images).resolve("web")
    (images / "web.yaml").write_text(
        (images / "web.yaml")
        .read_text()
        .replace('version: "2.10"', 'version: "2.11"')
        .replace("  nginx-common: any\n", "  nginx-extras: any\n")
        .replace("net.core.somaxconn: 4096", "net.core.somaxconn: 8192")
    )
    site = images / "templates" / "nginx-site.conf.j2"
    site.write_text(site.read_text().replace("index index.html;", "index index.htm;"))
    new = Catalog.load(images).resolve("web")
    result = diff_images(old, new)
    found = {(c.section, c.key, c.kind) for c in result.changes}
    assert found == {
        ("image", "version", ChangeKind.CHANGED),
        ("packages", "nginx-common", ChangeKind.REMOVED),
        ("packages", "nginx-extras", ChangeKind.ADDED),
        ("sysctls", "net.core.somaxconn", ChangeKind.CHANGED),
        ("templates", "nginx-site.conf.j2", ChangeKind.CHANGED),
    }
    assert not result.same
    patch = result.template_diffs["nginx-site.conf.j2"]
    assert "-    index index.html;\n" in patch and "+    index index.htm;\n" in patch
