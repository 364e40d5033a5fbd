"""Rendering an image for a host: the desired state, and undefined variables failing clearly."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from fleetmend.errors import InputError
from fleetmend.fleet import Fleet
from tests.conftest import write


@pytest.fixture
def lab(repo: Path) -> Fleet:
    return Fleet.load(repo / "images", repo / "inventories" / "lab.yaml")


def test_desired_state_of_a_web_host(lab: Fleet) -> None:
    state = lab.desired(lab.inventory.host("web-1"))
    assert (state.host, state.image, state.version) == ("web-1", "web", "2.10")
    assert state.digest == lab.catalog.resolve("web").digest
    site = state.files["/etc/nginx/sites-enabled/default"]
    assert "server_name www.lab.internal;" in site.content
    assert "listen 80 default_server;" in site.content  # default() applies
    assert site.sha256 == hashlib.sha256(site.content.encode()).hexdigest()
    assert site.source == "template:nginx-site.conf.j2"
    assert (site.mode, site.owner, site.group) == ("0644", "root", "root")
    readme = state.files["/etc/fleetmend/README"]
    assert readme.source == "inline"
    assert state.packages["nginx"] == ">=1.22, <1.23"
    assert state.volumes["content"].path == "/srv/www"


def test_templates_see_peers_and_host_vars(lab: Fleet) -> None:
    kv2 = lab.desired(lab.inventory.host("kv-2"))
    conf = kv2.files["/etc/redis/redis.conf"].content
    assert "bind 127.0.0.1 127.77.0.22\n" in conf
    assert "replicaof 127.77.0.21 6379\n" in conf
    primary = lab.desired(lab.inventory.host("kv-1")).files["/etc/redis/redis.conf"].content
    assert "replicaof" not in primary
    motd = kv2.files["/etc/motd"].content
    assert "Replica set kv-lab; peers: kv-1, kv-3." in motd


def test_rendering_is_deterministic(lab: Fleet) -> None:
    host = lab.inventory.host("blob-2")
    assert lab.desired(host) == lab.desired(host)


def test_undefined_variable_names_template_line_variable_and_host(
    images: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    write(images / "templates" / "nginx-site.conf.j2", "a\nb\nserver_name {{ web_hostname }};\n")
    fleet = Fleet.load(images, repo / "inventories" / "lab.yaml")
    with pytest.raises(InputError) as exc:
        fleet.desired(fleet.inventory.host("web-2"))
    assert exc.value.lines() == [
        "images/templates/nginx-site.conf.j2:3: 'web_hostname' is undefined "
        "(for host web-2) (hint: define it in the host's or a group's inventory "
        "vars, or give a default: {{ name | default('x') }})"
    ]


def test_undefined_attribute_inside_an_included_template(
    images: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    write(images / "templates" / "partials" / "managed-header.j2", "# {{ fleetmend.owner }}\n")
    fleet = Fleet.load(images, repo / "inventories" / "lab.yaml")
    with pytest.raises(InputError) as exc:
        fleet.desired(fleet.inventory.host("kv-1"))
    lines = exc.value.lines()
    assert lines[0].startswith("images/templates/partials/managed-header.j2:1: ")
    assert "has no attribute 'owner'" in lines[0]
    assert "(for host kv-1)" in lines[0]


def test_sandbox_refuses_unsafe_attribute_access(
    images: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    write(images / "templates" / "motd.j2", "{{ ''.__class__.__mro__ }}\n")
    fleet = Fleet.load(images, repo / "inventories" / "lab.yaml")
    with pytest.raises(InputError) as exc:
        fleet.desired(fleet.inventory.host("web-1"))
    assert exc.value.lines()[0].startswith("images/templates/motd.j2:1: ")


def test_preview_another_image_for_a_host(lab: Fleet) -> None:
    host = lab.inventory.host("web-1")
    state = lab.desired(host, lab.catalog.resolve("base"))
    assert state.image == "base"
    assert "/etc/nginx/sites-enabled/default" not in state.files
