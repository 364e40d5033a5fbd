"""The `playbook` provider: runs the user's `playbooks/reimage.yml` on the control node.

The playbook is the place to call PXE, Redfish or a cloud API. It runs against
`localhost` with the host's inventory variables as `fleetmend_target` and must
report the rebuilt host's public key with
`ansible.builtin.set_stats: {data: {fleetmend_host_key: "ssh-ed25519 AAAA..."}}`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from fleetmend.inventory import Host
from fleetmend.playbooks import Outcome, playbook_path, run_playbook
from fleetmend.providers import ProviderError


class PlaybookProvider:
    def reimage(self, host: Host, work: Path) -> str:
        inventory = {
            "all": {
                "hosts": {
                    "localhost": {
                        "ansible_connection": "local",
                        # the Python running fleetmend: interpreter discovery on a
                        # control node can pick shims that do not run
                        "ansible_python_interpreter": sys.executable,
                    }
                }
            }
        }
        target = {"name": host.name, "address": host.address, "port": host.port, "vars": host.vars}
        result = run_playbook(
            playbook_path("reimage.yml"), inventory, work, extravars={"fleetmend_target": target}
        )
        if result.outcome is not Outcome.SUCCESSFUL:
            detail = "; ".join(f"{f.task}: {f.message}" for f in result.failures) or result.outcome
            raise ProviderError(f"reimage.yml failed for {host.name}: {detail}")
        key = str(result.stats_data.get("fleetmend_host_key", "")).strip()
        if len(key.split()) < 2:
            raise ProviderError(
                f"reimage.yml did not report {host.name}'s new host key",
                "end the playbook with set_stats: {data: {fleetmend_host_key: ...}}",
            )
        return " ".join(key.split()[:2])
