"""How a host is reached: inventory vars over ~/.ssh/config over defaults, ProxyJump chains."""

from __future__ import annotations

from pathlib import Path

from fleetmend.inventory import load_inventory
from fleetmend.transport.target import target_for
from tests.conftest import write


def test_inventory_over_ssh_config_over_defaults(tmp_path: Path) -> None:
    config = write(
        tmp_path / "ssh_config",
        """
        Host db-*.internal
          User dba
          Port 2222
          IdentityFile ~/.ssh/db_key
          ProxyJump ops@bastion.example.com:2022
        Host bastion.example.com
          HostName 192.0.2.1
          IdentityFile /keys/bastion
        Host web-1
          HostName 198.51.100.7
        """,
    )
    inv = write(
        tmp_path / "inv.yaml",
        """
        all:
          vars: {fleetmend_managed: false}
          hosts:
            db-1.internal: {}
            db-2.internal:
              {ansible_port: 22, ansible_user: root, ansible_ssh_private_key_file: /k/root}
            web-1: {}
            lab-1:
              ansible_host: 127.0.0.5
              ansible_ssh_common_args: >-
                -o UserKnownHostsFile=/lab/known_hosts -o IdentitiesOnly=yes -J root@127.0.0.6:2200
        """,
    )
    hosts = load_inventory(inv).hosts
    db1 = target_for(hosts["db-1.internal"], "inv.yaml", config)
    assert (db1.address, db1.port, db1.user) == ("db-1.internal", 2222, "dba")
    assert db1.key_files == (str(Path.home() / ".ssh" / "db_key"),)
    assert db1.jump is not None
    assert (db1.jump.address, db1.jump.port, db1.jump.user) == ("192.0.2.1", 2022, "ops")
    assert db1.jump.key_files == ("/keys/bastion",)
    db2 = target_for(hosts["db-2.internal"], "inv.yaml", config)
    assert (db2.port, db2.user) == (22, "root")  # the inventory wins
    assert db2.key_files[0] == "/k/root"
    web = target_for(hosts["web-1"], "inv.yaml", config)
    assert web.address == "198.51.100.7"  # HostName applies when no ansible_host is set
    lab = target_for(hosts["lab-1"], "inv.yaml", None)
    assert lab.known_hosts == ("/lab/known_hosts",)
    assert lab.identities_only
    assert lab.jump is not None and (lab.jump.address, lab.jump.port) == ("127.0.0.6", 2200)
    assert lab.jump.key_files == lab.key_files  # no key of its own: the target's
    assert lab.known_hosts_name == "127.0.0.5"
    assert db1.known_hosts_name == "[db-1.internal]:2222"
