"""The lab: a fleet of real SSH hosts on one Linux machine, with fault injection.

Each host has its own mount, UTS and PID namespaces, an overlay root (the
machine's `/` read-only below, a writable layer of its own above) and its own
sshd on a loopback address. The demo, the integration tests and the drills run
against it.
"""

from fleetmend.lab.lab import Lab, LabHostSpec, generated_hosts, hosts_from_fleet
from fleetmend.lab.state import Fault

__all__ = ["Fault", "Lab", "LabHostSpec", "generated_hosts", "hosts_from_fleet"]
