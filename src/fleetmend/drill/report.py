# ruff: noqa: E501  -- HTML rows and the page template read best one line each
"""A drill's report: stored in the state database, written as JSON and as one HTML page.

The page is self-contained (inline CSS and SVG, no script, nothing fetched):
the verdict, the expectations against what was measured, a timeline of each
host's phases (down, probe, reimage, wait-ssh, converge, re-seed, verify) with
the moment it was verified, and the data and floor details.
"""

from __future__ import annotations

import json
import sqlite3
from html import escape
from pathlib import Path
from typing import Any

from fleetmend.errors import InputError
from fleetmend.fsutil import write_atomic
from fleetmend.statedb import transaction

COLORS = {
    "down": "#d9534f",
    "retry-probe": "#9e9e9e",
    "restart-service": "#26a69a",
    "reimage": "#f0ad4e",
    "wait-ssh": "#f7d154",
    "converge": "#428bca",
    "reseed": "#8e6bbf",
    "verify": "#5cb85c",
    "verify-data": "#5cb85c",
}


def save(db: sqlite3.Connection, report: dict[str, Any], out_dir: Path) -> tuple[Path, Path]:
    """Record the drill; write DIR/ID/report.json and report.html. Returns both paths."""
    with transaction(db):
        db.execute(
            "INSERT INTO drills (id, scenario, started_at, passed, report) VALUES (?, ?, ?, ?, ?)",
            (
                report["id"],
                report["scenario"]["name"],
                report["started_at"],
                int(report["passed"]),
                json.dumps(report),
            ),
        )
    return write(report, out_dir / report["id"])


def write(report: dict[str, Any], where: Path) -> tuple[Path, Path]:
    json_path, html_path = where / "report.json", where / "report.html"
    write_atomic(json_path, json.dumps(report, indent=2) + "\n")
    write_atomic(html_path, html(report))
    return json_path, html_path


def load(db: sqlite3.Connection, drill_id: str) -> dict[str, Any]:
    row = db.execute("SELECT report FROM drills WHERE id = ?", (drill_id,)).fetchone()
    if row is None:
        raise InputError.one(
            "drills", "", f"no drill {drill_id!r}", "list them: fleetmend drill list"
        )
    data: dict[str, Any] = json.loads(row[0])
    return data


def listing(db: sqlite3.Connection, limit: int = 50) -> list[tuple[str, str, str, bool]]:
    rows = db.execute(
        "SELECT id, scenario, started_at, passed FROM drills ORDER BY started_at DESC LIMIT ?",
        (limit,),
    ).fetchall()
    return [(r[0], r[1], r[2], bool(r[3])) for r in rows]


def phases(report: dict[str, Any]) -> dict[str, list[tuple[str, float, float, str]]]:
    """Per host: (phase, start, end, detail) from the drill's events, in order."""
    end_of_drill = float(report["seconds"])
    rows: dict[str, list[tuple[str, float, float, str]]] = {}
    open_: dict[tuple[str, str], tuple[float, str]] = {}
    first_repair: dict[str, float] = {}
    for e in report["events"]:
        host, phase, t = e["host"], e["phase"], float(e["t"])
        if e["state"] == "start":
            open_[(host, phase)] = (t, e.get("detail", ""))
            if phase not in ("down", "retry-probe"):
                first_repair.setdefault(host, t)
        elif e["state"] == "end" and (host, phase) in open_:
            start, _ = open_.pop((host, phase))
            rows.setdefault(host, []).append((phase, start, t, e.get("detail", "")))
    recovered = {h: v for h, v in report["rto"]["hosts"].items() if v is not None}
    for (host, phase), (start, detail) in open_.items():
        if phase == "down":  # down until its repair began, or until it was verified
            broken_at = start
            end = first_repair.get(host, broken_at + recovered.get(host, end_of_drill - start))
            rows.setdefault(host, []).insert(0, (phase, start, end, detail))
        else:
            rows.setdefault(host, []).append((phase, start, end_of_drill, "did not finish"))
    return rows


def _timeline(report: dict[str, Any]) -> str:
    rows = {h: sorted(r, key=lambda p: p[0] != "down") for h, r in phases(report).items()}
    verified = {e["host"]: float(e["t"]) for e in report["events"] if e["phase"] == "verified"}
    hosts = sorted(rows, key=lambda h: (h not in report["rto"]["hosts"], h))
    for h in report["scope"]:
        if h not in rows:
            hosts.append(h)
    span = max(float(report["seconds"]), 1.0)
    left, width, row_h = 110, 760, 26
    height = 40 + row_h * len(hosts)
    scale = width / span
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="timeline" width="{left + width + 20}" '
        f'height="{height}" role="img" aria-label="timeline of each host">'
    ]
    step = max(1, round(span / 10))
    for s in range(0, int(span) + 1, step):
        x = left + s * scale
        parts.append(
            f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 10}" stroke="#e5e5e5"/>'
            f'<text x="{x:.1f}" y="14" font-size="10" text-anchor="middle">{s}s</text>'
        )
    for i, host in enumerate(hosts):
        y = 24 + i * row_h
        parts.append(
            f'<text x="{left - 8}" y="{y + 15}" font-size="12" text-anchor="end">'
            f"{escape(host)}</text>"
        )
        for phase, start, end, detail in rows.get(host, []):
            x, w = left + start * scale, max(2.0, (end - start) * scale)
            color = COLORS.get(phase, "#777")
            tip = f"{phase}: {start:.1f}s to {end:.1f}s ({end - start:.1f}s) {detail}"
            inset = 8 if phase == "retry-probe" else 3  # probes drawn over the down bar
            parts.append(
                f'<rect class="phase phase-{escape(phase)}" x="{x:.1f}" y="{y + inset}" '
                f'width="{w:.1f}" height="{row_h - 2 * inset - 2}" fill="{color}" rx="2">'
                f"<title>{escape(host)}: {escape(tip)}</title></rect>"
            )
        if host in verified:
            x = left + verified[host] * scale
            parts.append(
                f'<path class="verified" d="M{x:.1f},{y + 2} l6,9 l-6,9 l-6,-9 z" '
                f'fill="#2e7d32"><title>{escape(host)} verified at '
                f"{verified[host]:.1f}s</title></path>"
            )
    parts.append("</svg>")
    return "".join(parts)


def html(report: dict[str, Any]) -> str:
    sc = report["scenario"]
    ok = report["passed"]
    badge = '<span class="pass">PASSED</span>' if ok else '<span class="fail">FAILED</span>'
    rto = report["rto"]
    expect_rows = "".join(
        f"<tr><td>{escape(e['what'])}</td><td>{escape(e['expected'])}</td>"
        f"<td>{escape(e['measured'])}</td>"
        f'<td class="{"ok" if e["held"] else "bad"}">{"held" if e["held"] else "NOT held"}</td></tr>'
        for e in report["expectations"]
    )
    host_rows = "".join(
        f"<tr><td>{escape(h)}</td><td>{'never' if v is None else f'{v:.1f}s'}</td>"
        f"<td>{escape(report['heal']['hosts'].get(h, {}).get('state', ''))}</td>"
        f"<td>{escape(' → '.join(r[0] for r in report['heal']['hosts'].get(h, {}).get('rungs', [])))}</td></tr>"
        for h, v in rto["hosts"].items()
    )
    faults = "".join(
        f"<li>{escape(f['host'])}: {escape(f['fault'])} at {f['t']:.1f}s</li>"
        for f in report["injected"]
    )
    vol_rows = "".join(
        f"<tr><td>{escape(v['replica_set'])}/{escape(v['volume'])}</td><td>{escape(v['host'])}</td>"
        f'<td>{v["files"]}</td><td class="{"ok" if not v["lost_files"] else "bad"}">'
        f"{v['lost_files']} ({v['lost_bytes']} B)</td>"
        f"<td>{escape(', '.join(v['lost'][:5]))}</td></tr>"
        for v in report["rpo"]["volumes"]
    )
    floor_rows = "".join(
        f"<tr><td>{escape(n)}</td><td>{f['min_live']}</td><td>{f['lowest']} at {f['lowest_at']:.1f}s</td>"
        f'<td class="{"ok" if f["held"] else "bad"}">{"held" if f["held"] else "broken"}</td></tr>'
        for n, f in report["floor"].items()
    )
    legend = "".join(
        f'<span class="key"><i style="background:{c}"></i>{escape(p)}</span>'
        for p, c in COLORS.items()
        if p != "verify-data"
    )
    overall = "never" if rto["overall"] is None else f"{rto['overall']:.1f}s"
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>fleetmend drill {escape(sc["name"])} {escape(report["id"])}</title>
<style>
body {{ font: 14px/1.45 system-ui, sans-serif; margin: 2em auto; max-width: 960px; color: #222; }}
h1 {{ font-size: 1.5em; margin-bottom: .2em; }}
.pass, .fail {{ padding: .15em .6em; border-radius: 4px; color: #fff; font-weight: 600; }}
.pass {{ background: #2e7d32; }} .fail {{ background: #c62828; }}
table {{ border-collapse: collapse; margin: .6em 0 1.4em; }}
td, th {{ border-bottom: 1px solid #ddd; padding: .3em .8em; text-align: left; }}
td.ok {{ color: #2e7d32; }} td.bad {{ color: #c62828; font-weight: 600; }}
.numbers span {{ display: inline-block; margin-right: 2em; font-size: 1.2em; }}
.key {{ margin-right: 1em; font-size: 12px; }}
.key i {{ display: inline-block; width: 12px; height: 12px; margin-right: 4px; vertical-align: middle; }}
</style></head><body>
<h1>Drill: {escape(sc["name"])} {badge}</h1>
<p>{escape(sc.get("description", ""))}</p>
<p>drill {escape(report["id"])}, started {escape(report["started_at"])}, inventory
{escape(report["inventory"])}, {report["seconds"]:.1f}s from the first fault to the end of heal.</p>
<p class="numbers"><span>RTO <b id="rto">{overall}</b></span>
<span>RPO <b id="rpo">{report["rpo"]["files"]} files, {report["rpo"]["bytes"]} bytes lost</b></span></p>
<h2>Expectations</h2>
<table><tr><th>what</th><th>expected</th><th>measured</th><th></th></tr>{expect_rows}</table>
<h2>Timeline</h2>
<p>{legend}<span class="key">◆ verified</span></p>
{_timeline(report)}
<h2>Hosts broken on purpose</h2>
<ul>{faults}</ul>
<table><tr><th>host</th><th>recovered after</th><th>heal</th><th>rungs</th></tr>{host_rows}</table>
<h2>Data, against the pre-fault manifests</h2>
<table><tr><th>volume</th><th>copy</th><th>files</th><th>lost</th><th>which</th></tr>{vol_rows}</table>
<h2>Replica-set floors during the drill</h2>
<table><tr><th>replica set</th><th>min_live</th><th>lowest live copies</th><th></th></tr>{floor_rows}</table>
</body></html>
"""
