"""Facts: what one probe, run once per host over one SSH session, reports."""

from fleetmend.facts.model import Facts
from fleetmend.facts.probe import ProbeError, parse_probe, probe_script

__all__ = ["Facts", "ProbeError", "parse_probe", "probe_script"]
