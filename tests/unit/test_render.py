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


# -- the `command` re-seed strategy's commands


def test_reseed_commands_render_for_the_chosen_source(repo: Path) -> None:
    prod = Fleet.load(repo / "images", repo / "inventories" / "example-prod.yaml")
    host = prod.inventory.host("pg-fra-2.example.com")
    source = prod.inventory.host("pg-fra-3.example.com")
    restore = prod.reseed_volume(host, "pgdata", source).reseed.restore
    assert restore is not None
    assert "--host=198.51.100.43 --port=5433 --username=replicator" in restore  # source's port
    primary = prod.inventory.host("pg-fra-1.example.com")
    assert "--port=5432" in (prod.reseed_volume(host, "pgdata", primary).reseed.restore or "")
    assert "{{ source.address }}" in (prod.image_of(host).volumes["pgdata"].reseed.restore or "")
    kv = prod.inventory.host("kv-fra-2.example.com")  # the files strategy: nothing to render
    declared = prod.image_of(kv).volumes["data"]
    assert prod.reseed_volume(kv, "data", prod.inventory.host("kv-ams-1.example.com")) == declared


def _command_fleet(images: Path, restore: str, label: str) -> Fleet:
    write(
        images / "cmd.yaml",
        f"""
        name: cmd
        version: "1"
        volumes:
          data:
            path: /srv/data
            reseed:
              strategy: command
              restore: {restore}
        """,
    )
    inventory = write(
        images.parent / "inv.yaml",
        f"""
        all:
          vars:
            fleetmend_image: cmd
            fleetmend_replica_set: rs
            fleetmend_replica_sets: {{rs: {{min_live: 1}}}}
            label: {label}
          hosts:
            a: {{ansible_host: 127.0.0.1, port_var: 5433}}
            b: {{ansible_host: 127.0.0.2}}
        """,
    )
    return Fleet.load(images, inventory)


def test_every_value_in_a_command_is_one_shell_word(images: Path) -> None:
    """An inventory value never becomes shell syntax on a host; `| raw` opts out."""
    restore = "'echo {{ label }} {{ source.vars.port_var }} {{ label | raw }}'"
    fleet = _command_fleet(images, restore, "'a b; touch /tmp/x'")
    host, source = fleet.inventory.host("b"), fleet.inventory.host("a")
    rendered = fleet.reseed_volume(host, "data", source).reseed.restore
    assert rendered == "echo 'a b; touch /tmp/x' 5433 a b; touch /tmp/x"


def test_an_undefined_name_in_a_command_is_found_before_anything_runs(
    images: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    fleet = _command_fleet(images, "'fetch {{ source.vars.pg_port }}'", "x")
    host = fleet.inventory.host("b")
    assert [str(p) for p in fleet.reseed_problems(host)] == [
        "images/cmd.yaml:8: volumes.data.reseed.restore: 'dict object' has no attribute "
        "'pg_port' (for host b) (hint: define it in the host's or a group's inventory vars "
        "(the source's are source.vars.NAME), or give a default: {{ name | default('x') }})"
    ]


def test_an_inherited_command_is_placed_in_the_parent_image(
    images: Path, repo: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(images.parent)
    write(images / "pg2.yaml", 'name: pg2\nversion: "1"\nextends: postgres\n')
    fleet = Fleet.load(images, repo / "inventories" / "example-prod.yaml")
    file, place = fleet.catalog.where(
        fleet.catalog.resolve("pg2"), ("volumes", "pgdata", "reseed", "restore")
    )
    assert (file, place) == ("images/postgres.yaml", "35: volumes.pgdata.reseed.restore")
