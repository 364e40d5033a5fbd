"""Check reports as text for programs: JSON, JUnit XML for CI, Prometheus for node_exporter."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import datetime

from fleetmend.check import CheckReport
from fleetmend.drift import Verdict


def to_json(report: CheckReport) -> str:
    data = report.model_dump(mode="json")
    data["counts"] = {v.value: n for v, n in report.counts().items()}
    data["exit_code"] = int(report.exit_code())
    for rs, dumped in zip(report.replica_sets, data["replica_sets"], strict=True):
        dumped["under_floor"] = rs.under_floor
    return json.dumps(data, indent=2) + "\n"


def to_junit(report: CheckReport) -> str:
    """One testcase per host; a failure per counted drift item; unreachable as an error."""
    counts = report.counts()
    suite = ET.Element(
        "testsuite",
        name="fleetmend check",
        tests=str(len(report.hosts)),
        failures=str(counts[Verdict.DRIFTED] + counts[Verdict.FAILED]),
        errors=str(counts[Verdict.UNREACHABLE]),
        time=f"{report.seconds:.3f}",
        timestamp=report.started_at,
    )
    for host in report.hosts:
        case = ET.SubElement(
            suite, "testcase", classname=host.image, name=host.host, time=f"{host.seconds:.3f}"
        )
        if host.verdict is Verdict.UNREACHABLE:
            error = ET.SubElement(case, "error", type=host.reason or "error", message=host.detail)
            error.text = f"{host.host} unreachable ({host.reason}): {host.detail}"
        for item in host.counted:
            failure = ET.SubElement(
                case,
                "failure",
                type=item.kind.value,
                message=f"{item.target}: expected {item.expected}, found {item.actual}",
            )
            failure.text = (
                f"{item.kind.value} {item.target}: expected {item.expected}, found {item.actual}"
            )
        if host.waived:
            out = ET.SubElement(case, "system-out")
            out.text = "\n".join(
                f"waived {i.kind.value} {i.target}: {i.waived}" for i in host.waived
            )
    ET.indent(suite)
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(suite, encoding="unicode") + "\n"
    )


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _metric(name: str, labels: dict[str, str], value: float) -> str:
    inner = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
    number = str(int(value)) if float(value).is_integer() else repr(float(value))  # full precision
    return f"{name}{{{inner}}} {number}" if inner else f"{name} {number}"


def to_prometheus(report: CheckReport) -> str:
    """Text exposition format, for node_exporter's textfile collector."""
    lines: list[str] = []

    def family(name: str, kind: str, help_text: str) -> None:
        lines.append(f"# HELP {name} {help_text}")
        lines.append(f"# TYPE {name} {kind}")

    family("fleetmend_host_verdict", "gauge", "1 for the host's verdict in the last check.")
    for h in report.hosts:
        for v in Verdict:
            labels = {"host": h.host, "image": h.image, "verdict": v.value}
            lines.append(_metric("fleetmend_host_verdict", labels, int(h.verdict is v)))
    family("fleetmend_host_drift_items", "gauge", "Drift items found, waived ones excluded.")
    for h in report.hosts:
        lines.append(_metric("fleetmend_host_drift_items", {"host": h.host}, len(h.counted)))
    family("fleetmend_host_waived_items", "gauge", "Drift items covered by a waiver.")
    for h in report.hosts:
        lines.append(_metric("fleetmend_host_waived_items", {"host": h.host}, len(h.waived)))
    family("fleetmend_volume_free_bytes", "gauge", "Free space on a data volume's filesystem.")
    for h in report.hosts:
        for name, vol in h.volumes.items():
            if vol.get("free_kb") is not None:
                labels = {"host": h.host, "volume": name}
                lines.append(_metric("fleetmend_volume_free_bytes", labels, vol["free_kb"] * 1024))
    family("fleetmend_replica_set_healthy", "gauge", "Healthy copies found in the last check.")
    for rs in report.replica_sets:
        lines.append(
            _metric("fleetmend_replica_set_healthy", {"replica_set": rs.name}, len(rs.healthy))
        )
    family("fleetmend_replica_set_min_live", "gauge", "The replica set's floor of healthy copies.")
    for rs in report.replica_sets:
        lines.append(
            _metric("fleetmend_replica_set_min_live", {"replica_set": rs.name}, rs.min_live)
        )
    family(
        "fleetmend_replica_set_under_floor", "gauge", "1 when fewer healthy copies than min_live."
    )
    for rs in report.replica_sets:
        labels = {"replica_set": rs.name}
        lines.append(_metric("fleetmend_replica_set_under_floor", labels, int(rs.under_floor)))
    family("fleetmend_check_hosts", "gauge", "Hosts per verdict in the last check.")
    for v, n in report.counts().items():
        lines.append(_metric("fleetmend_check_hosts", {"verdict": v.value}, n))
    family("fleetmend_check_duration_seconds", "gauge", "How long the last check took.")
    lines.append(_metric("fleetmend_check_duration_seconds", {}, report.seconds))
    family("fleetmend_check_timestamp_seconds", "gauge", "When the last check started (Unix time).")
    started = datetime.fromisoformat(report.started_at).timestamp()
    lines.append(_metric("fleetmend_check_timestamp_seconds", {}, started))
    return "\n".join(lines) + "\n"
