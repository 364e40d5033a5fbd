"""Inventories through Ansible's loader; fleetmend's variables checked with their place."""

from __future__ import annotations

from pathlib import Path

import pytest

from fleetmend.errors import InputError
from fleetmend.fleet import Fleet
from fleetmend.inventory import load_inventory
from tests.conftest import write


def problems_of(path: Path) -> list[str]:
    with pytest.raises(InputError) as exc:
        load_inventory(path)
    return exc.value.lines()


def test_lab_inventory(repo: Path) -> None:
    inv = load_inventory(repo / "inventories" / "lab.yaml")
    assert len(inv.hosts) == 8
    web1 = inv.host("web-1")
    assert (web1.address, web1.port, web1.user) == ("127.77.0.11", 2200, "root")
    assert (web1.image, web1.replica_set, web1.site) == ("web", "web-lab", "lab-a")
    assert web1.groups == ["web"]
    assert web1.vars["web_server_name"] == "www.lab.internal"
    assert "inventory_hostname" not in web1.vars  # Ansible's magic vars are left out
    assert inv.replica_sets["kv-lab"].min_live == 2
    assert inv.replica_sets["kv-lab"].members == ["kv-1", "kv-2", "kv-3"]
    assert [p.name for p in inv.peers(inv.host("kv-2"))] == ["kv-1", "kv-3"]
    # every lab host is on loopback
    assert all(h.address.startswith("127.") for h in inv.hosts.values())


def test_production_example_shows_every_variable(repo: Path) -> None:
    inv = load_inventory(repo / "inventories" / "example-prod.yaml")
    bastion = inv.host("bastion.fra.example.com")
    assert not bastion.managed and bastion.image is None
    assert {h.site for h in inv.managed()} == {"fra", "ams"}
    assert inv.host("kv-fra-1.example.com").protected
    blob = inv.host("blob-fra-1.example.com")
    assert blob.port == 2222
    assert blob.key_file == "~/.ssh/fleet_ed25519"
    assert blob.ssh_common_args == "-o ProxyJump=ops@bastion.fra.example.com"
    assert inv.host("blob-ams-1.example.com").user == "blobops"
    assert len(inv.replica_sets) == 5
    assert inv.replica_sets["kv-sessions"].members == [
        "kv-ams-1.example.com",
        "kv-fra-1.example.com",
        "kv-fra-2.example.com",
    ]


def test_ini_inventory_with_the_same_variables(repo: Path) -> None:
    inv = load_inventory(repo / "inventories" / "example-small.ini")
    assert inv.host("web-b").protected is True
    assert inv.host("web-a").protected is False
    assert inv.replica_sets["pair"].members == ["web-a", "web-b"]


def test_group_vars_directory_is_read(tmp_path: Path) -> None:
    write(tmp_path / "inv.yaml", "all:\n  hosts:\n    h1: {ansible_host: 127.0.0.9}\n")
    write(tmp_path / "group_vars" / "all.yaml", "fleetmend_image: base\nfleetmend_site: dc1\n")
    host = load_inventory(tmp_path / "inv.yaml").host("h1")
    assert (host.image, host.site) == ("base", "dc1")


def test_problems_name_file_line_host_and_variable(in_tmp: Path) -> None:
    write(
        in_tmp / "inv.yaml",
        """
        all:
          vars:
            fleetmend_replica_sets:
              rs1: {min_live: 3}
          hosts:
            h1: {ansible_host: 127.0.0.5, fleetmend_image: base, fleetmend_replica_set: rs1}
            h2: {fleetmend_image: base, fleetmend_replica_set: rs2, ansible_port: abc}
            h3: {fleetmend_imag: web}
        """,
    )
    assert problems_of(in_tmp / "inv.yaml") == [
        "inv.yaml:7: host h2: ansible_port: Input should be a valid integer, "
        "unable to parse string as an integer",
        "inv.yaml:8: host h3: fleetmend_imag: unknown fleetmend variable "
        "(hint: did you mean fleetmend_image?)",
        "inv.yaml: host h3: fleetmend_image: managed host has no image (hint: set "
        "fleetmend_image on the host or its group, or fleetmend_managed: false for hosts "
        "fleetmend must leave alone)",
        "inv.yaml:7: host h2: fleetmend_replica_set: unknown replica set 'rs2' "
        "(hint: declare it under fleetmend_replica_sets (declared: rs1))",
        "inv.yaml: fleetmend_replica_sets.rs1: replica set has 1 member(s) but min_live 3: "
        "it can never be healthy (hint: add members (fleetmend_replica_set on the hosts) "
        "or lower min_live)",
    ]


def test_unknown_image_is_named_at_the_variable(in_tmp: Path, repo: Path) -> None:
    write(
        in_tmp / "inv.yaml",
        """
        all:
          hosts:
            h1:
              ansible_host: 127.0.0.5
              fleetmend_image: wbe
        """,
    )
    with pytest.raises(InputError) as exc:
        Fleet.load(repo / "images", in_tmp / "inv.yaml")
    (line,) = exc.value.lines()
    assert line.startswith("inv.yaml:5: host h1: fleetmend_image: unknown image 'wbe' (hint: ")
    assert "base, blobstore, kv, postgres, web" in line


def test_ini_values_are_placed_by_line(in_tmp: Path) -> None:
    write(in_tmp / "inv.ini", "[web]\nw1 fleetmend_image=base ansible_port=x\n")
    assert problems_of(in_tmp / "inv.ini") == [
        "inv.ini:2: host w1: ansible_port: Input should be a valid integer, "
        "unable to parse string as an integer"
    ]


def test_duplicate_key_in_yaml_inventory(in_tmp: Path) -> None:
    write(
        in_tmp / "inv.yaml",
        "all:\n  hosts:\n    h1: {fleetmend_image: base}\n    h1: {fleetmend_image: web}\n",
    )
    assert problems_of(in_tmp / "inv.yaml") == [
        "inv.yaml:4:5: invalid YAML: duplicate key 'h1' (first defined on line 3) "
        "(hint: each key may appear once in a mapping; merge the two entries)"
    ]


def test_unparseable_ini_is_one_clear_error(in_tmp: Path) -> None:
    write(in_tmp / "inv.ini", "[web\nw1\n")
    (line,) = problems_of(in_tmp / "inv.ini")
    assert line.startswith("inv.ini: Ansible cannot read this inventory: ")


def test_missing_inventory(in_tmp: Path) -> None:
    assert problems_of(in_tmp / "nope.yaml") == [
        "nope.yaml: inventory not found (hint: pass -i FILE or set FLEETMEND_INVENTORY)"
    ]


def test_conflicting_replica_set_declarations(in_tmp: Path) -> None:
    write(
        in_tmp / "inv.yaml",
        """
        all:
          children:
            a:
              vars:
                fleetmend_replica_sets: {rs: {min_live: 1}}
              hosts:
                h1: {fleetmend_image: base, fleetmend_replica_set: rs}
            b:
              vars:
                fleetmend_replica_sets: {rs: {min_live: 2}}
              hosts:
                h2: {fleetmend_image: base, fleetmend_replica_set: rs}
        """,
    )
    (line,) = problems_of(in_tmp / "inv.yaml")
    assert line.startswith("inv.yaml:10: host h2: fleetmend_replica_sets.rs: ")
    assert "declared differently for host h1" in line


def test_unknown_host(repo: Path) -> None:
    inv = load_inventory(repo / "inventories" / "lab.yaml")
    with pytest.raises(InputError) as exc:
        inv.host("web-9")
    assert "unknown host 'web-9'" in exc.value.lines()[0]
