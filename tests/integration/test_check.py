"""`fleetmend check` against a lab fleet whose hosts are broken in every way it must see.

The lab hosts run the `probe` test image, which a lab host can satisfy without a
converge: packages and sysctl values this machine already has, a file, a stand-in
daemon and a data volume the fixture writes, and the stamp. Then one host per
drift kind is broken, one hangs, one presents a changed host key.
"""

from __future__ import annotations

import json
import shutil
import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from fleetmend.check import CheckOptions, CheckReport, run_check
from fleetmend.cli.app import app
from fleetmend.drift import DriftKind, Verdict
from fleetmend.fleet import Fleet
from fleetmend.lab import Fault, Lab
from fleetmend.lab.faults import FaultOptions
from fleetmend.transport.ssh import Timeouts
from fleetmend.waivers import Waiver
from tests.integration.lab_helpers import os_release, require_root, run

REPO = Path(__file__).resolve().parents[2]
NET = "127.77.201."
TIMEOUT = 2.0
HOSTS = {
    "c1": "rs-b",
    "c2": "rs-a",
    "d-file": "rs-b",
    "d-pkg": None,
    "d-svc": None,
    "d-sysctl": None,
    "d-stamp": None,
    "f-image": "rs-a",
    "hung": "rs-a",
    "keychg": None,
}


def write_images(directory: Path) -> Path:
    images = directory / "images"
    shutil.copytree(REPO / "images", images)
    os_id, version_id = os_release()
    swappiness = int(Path("/proc/sys/vm/swappiness").read_text())
    probe = {
        "name": "probe",
        "version": "1",
        "description": "What a lab host can be without a converge",
        "os": {"id": os_id, "version_id": version_id},
        "packages": {"rsync": "any", "procps": "any", "telnetd": "absent"},
        "files": {"/etc/probe-test.conf": {"content": "answer = 42\n", "mode": "0640"}},
        "services": {
            "ssh": {"process": "sshd", "enabled": True},
            "probe-daemon": {"enabled": False},
        },
        "sysctls": {"vm.swappiness": str(swappiness)},
        "users": {"root": {"uid": 0}},
        "groups": {"root": {"gid": 0}},
        "volumes": {
            "data": {
                "path": "/srv/probe-data",
                "position": "cat POSITION",
                "health": "test -s POSITION",
            }
        },
    }
    (images / "probe.yaml").write_text(yaml.safe_dump(probe))
    other = {
        "name": "probe-sysctl",
        "version": "1",
        "extends": "probe",
        "sysctls": {"vm.swappiness": str((swappiness + 1) % 100)},
    }
    (images / "probe-sysctl.yaml").write_text(yaml.safe_dump(other))
    return images


def write_inventory(directory: Path) -> Path:
    hosts = {}
    for i, (name, rs) in enumerate(HOSTS.items(), start=10):
        hosts[name] = {
            "ansible_host": f"{NET}{i}",
            "fleetmend_image": "probe-sysctl" if name == "d-sysctl" else "probe",
            **({"fleetmend_replica_set": rs} if rs else {}),
        }
    inventory = {
        "all": {
            "vars": {
                "ansible_port": 2200,
                "fleetmend_replica_sets": {"rs-a": {"min_live": 2}, "rs-b": {"min_live": 1}},
            },
            "hosts": hosts,
        }
    }
    path = directory / "probe-lab.yaml"
    path.write_text(yaml.safe_dump(inventory))
    return path


def make_conformant(lab: Lab, fleet: Fleet, name: str) -> None:
    """Make a host what its image says. Root's shell becomes /bin/sh: sshd runs every
    command through the user's shell and its start-up files, which may write (a
    version manager's init does, on every login); the read-only test must see what
    fleetmend does, not what a host's own shell start-up files do."""
    state = fleet.desired(fleet.inventory.host(name))
    run(lab, name, "usermod -s /bin/sh root")
    stamp = json.dumps({"image": state.image, "version": state.version, "digest": state.digest})
    run(
        lab,
        name,
        "printf 'answer = 42\\n' > /etc/probe-test.conf && chmod 0640 /etc/probe-test.conf && "
        "mkdir -p /etc/systemd/system/multi-user.target.wants && "
        "ln -sf /lib/systemd/system/ssh.service /etc/systemd/system/multi-user.target.wants/ && "
        "rm -f /etc/systemd/system/multi-user.target.wants/probe-daemon.service && "
        "cp /bin/sleep /usr/local/bin/probe-daemon && "
        "(setsid /usr/local/bin/probe-daemon 100000 </dev/null >/dev/null 2>&1 &) && "
        "mkdir -p /srv/probe-data /etc/fleetmend && echo 7 > /srv/probe-data/POSITION && "
        f"printf '%s' '{stamp}' > /etc/fleetmend/stamp.json",
    )


def checked_inventory(lab: Lab, directory: Path) -> Path:
    """The lab's inventory with services and sysctls checked again.

    The lab leaves them out by default because it cannot converge them (no
    service manager, the machine's kernel); checking them read-only works, and
    is what these tests are about.
    """
    inventory = yaml.safe_load(lab.inventory_path.read_text())
    inventory["all"]["vars"]["fleetmend_manage_services"] = True
    inventory["all"]["vars"]["fleetmend_apply_sysctls"] = True
    path = directory / "inventory.yaml"
    path.write_text(yaml.safe_dump(inventory))
    return path


@dataclass
class ProbeLab:
    lab: Lab
    images: Path
    inventory: Path
    state: Path

    def fleet(self, inventory: Path | None = None) -> Fleet:
        return Fleet.load(self.images, inventory or self.inventory)

    def check(self, *patterns: str, accept_new: bool = False, **kw: object) -> CheckReport:
        fleet = self.fleet(kw.pop("inventory", None))  # type: ignore[arg-type]
        options = CheckOptions(
            state_dir=self.state,
            timeouts=Timeouts(connect=TIMEOUT, command=20),
            accept_new=accept_new,
            ssh_config=None,
            user_known_hosts=[],
        )
        waivers = kw.pop("waivers", [])
        return run_check(fleet, fleet.inventory.select(list(patterns)), options, waivers)  # type: ignore[arg-type]

    def cli(self, *args: str) -> tuple[int, str]:
        result = CliRunner().invoke(
            app,
            [
                "--images",
                str(self.images),
                "-i",
                str(self.inventory),
                "--state-dir",
                str(self.state),
                "check",
                "--timeout",
                str(TIMEOUT),
                "--ssh-config",
                "/dev/null",
                *args,
            ],
        )
        return result.exit_code, result.stdout


@pytest.fixture(scope="module")
def probe_lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProbeLab]:
    require_root()
    root = tmp_path_factory.mktemp("check")
    images, inventory = write_images(root), write_inventory(root)
    lab = Lab(root / "state")
    try:
        lab.up_fleet(Fleet.load(images, inventory))
        fleet = Fleet.load(images, lab.inventory_path)
        for name in HOSTS:
            make_conformant(lab, fleet, name)
        lab.break_host("d-file", Fault.DRIFT_FILE, FaultOptions(path="/etc/probe-test.conf"))
        lab.break_host("d-pkg", Fault.REMOVE_PACKAGE, FaultOptions(package="rsync"))
        lab.break_host("d-svc", Fault.STOP_SERVICE, FaultOptions(service="probe-daemon"))
        stale = json.dumps({"image": "probe", "version": "0.9", "digest": "0" * 64})
        run(lab, "d-stamp", f"printf '%s' '{stale}' > /etc/fleetmend/stamp.json")
        other = json.dumps({"image": "web", "version": "2.10", "digest": "1" * 64})
        run(lab, "f-image", f"printf '%s' '{other}' > /etc/fleetmend/stamp.json")
        lab.break_host("hung", Fault.HANG)
        known = lab.known_hosts_path.read_text().splitlines()
        keychg = lab.record().hosts["keychg"]
        fake = (lab.key_path.with_name("id_ed25519.pub")).read_text().split()[:2]
        lab.known_hosts_path.write_text(
            "\n".join(
                f"[{keychg.address}]:{keychg.port} {' '.join(fake)}"
                if keychg.address in line
                else line
                for line in known
            )
            + "\n"
        )
        yield ProbeLab(lab, images, checked_inventory(lab, root), root / "state")
    finally:
        lab.down()


@pytest.fixture(scope="module")
def full(probe_lab: ProbeLab) -> tuple[CheckReport, float]:
    start = time.monotonic()
    report = probe_lab.check()
    return report, time.monotonic() - start


def test_every_verdict(full: tuple[CheckReport, float]) -> None:
    report, _ = full
    by_host = {h.host: h for h in report.hosts}
    kinds = {h: [(i.kind, i.target) for i in r.counted] for h, r in by_host.items()}
    assert by_host["c1"].verdict is Verdict.CONFORMANT and kinds["c1"] == []
    assert by_host["c2"].verdict is Verdict.CONFORMANT
    expected = {
        "d-file": [(DriftKind.FILE, "/etc/probe-test.conf")],
        "d-pkg": [(DriftKind.PACKAGE, "rsync")],
        "d-svc": [(DriftKind.SERVICE, "probe-daemon")],
        "d-sysctl": [(DriftKind.SYSCTL, "vm.swappiness")],
        "d-stamp": [(DriftKind.STAMP, "digest")],
    }
    for host, items in expected.items():
        assert by_host[host].verdict is Verdict.DRIFTED, by_host[host]
        assert kinds[host] == items
    assert by_host["f-image"].verdict is Verdict.FAILED
    assert kinds["f-image"] == [(DriftKind.STAMP, "image")]
    hung = by_host["hung"]
    assert (hung.verdict, hung.reason) == (Verdict.UNREACHABLE, "timeout")
    keychg = by_host["keychg"]
    assert (keychg.verdict, keychg.reason) == (Verdict.UNREACHABLE, "host-key")
    assert "CHANGED" in keychg.detail and "SHA256:" in keychg.detail
    assert by_host["c1"].volumes["data"]["position"] == "7"


def test_a_hung_host_costs_the_timeout_once(full: tuple[CheckReport, float]) -> None:
    _, seconds = full
    assert seconds < TIMEOUT + 2.5, f"check took {seconds:.1f}s with a {TIMEOUT}s timeout"


def test_replica_set_under_floor(full: tuple[CheckReport, float]) -> None:
    sets = {rs.name: rs for rs in full[0].replica_sets}
    assert sets["rs-a"].healthy == ["c2"] and sets["rs-a"].under_floor
    assert sets["rs-b"].healthy == ["c1", "d-file"] and not sets["rs-b"].under_floor


@pytest.mark.parametrize("fmt", ["table", "json", "junit", "prometheus"])
def test_exit_codes_in_every_format(probe_lab: ProbeLab, fmt: str) -> None:
    code, out = probe_lab.cli("--format", fmt, "c1")
    assert code == 0
    code, drifted = probe_lab.cli("--format", fmt, "d-file")
    assert code == 3
    code, broken = probe_lab.cli("--format", fmt, "f-image", "hung", "c2")
    assert code == 4
    if fmt == "json":
        assert json.loads(out)["counts"]["conformant"] == 1
        data = json.loads(broken)
        assert {h["host"]: h["verdict"] for h in data["hosts"]} == {
            "c2": "conformant",
            "f-image": "failed",
            "hung": "unreachable",
        }
        assert [rs["under_floor"] for rs in data["replica_sets"]] == [True]
    elif fmt == "junit":
        suite = ET.fromstring(drifted)
        (case,) = suite.iter("testcase")
        assert case.get("name") == "d-file" and len(case.findall("failure")) == 1
        errors = [
            c.get("name")
            for c in ET.fromstring(broken).iter("testcase")
            if c.find("error") is not None
        ]
        assert errors == ["hung"]
    elif fmt == "prometheus":
        assert 'fleetmend_host_verdict{host="d-file",image="probe",verdict="drifted"} 1' in drifted
        assert 'fleetmend_replica_set_under_floor{replica_set="rs-a"} 1' in broken
    else:
        assert "conformant 1" in out
        assert "d-file" in drifted and "file /etc/probe-test.conf" in drifted
        assert "UNDER FLOOR" in broken and "timeout" in broken


def test_output_file_is_written_whole(probe_lab: ProbeLab, tmp_path: Path) -> None:
    target = tmp_path / "textfile" / "fleetmend.prom"
    code, out = probe_lab.cli("--format", "prometheus", "--output", str(target), "c1", "d-pkg")
    assert code == 3
    assert (
        'fleetmend_host_verdict{host="d-pkg",image="probe",verdict="drifted"} 1'
        in target.read_text()
    )
    assert "checked 2 hosts" in out  # people still get the summary
    assert [p.name for p in target.parent.iterdir()] == ["fleetmend.prom"]  # no temp file left


def _layer(lab: Lab, host: str) -> dict[str, tuple[int, int, str]]:
    upper = lab.host_dir(host) / "upper"
    out = {}
    for path in sorted(upper.rglob("*")):
        st = path.lstat()
        content = path.read_bytes().hex()[:64] if path.is_file() and not path.is_symlink() else ""
        out[str(path.relative_to(upper))] = (st.st_mode, st.st_mtime_ns, content)
    return out


def test_check_changes_nothing_on_the_host(probe_lab: ProbeLab) -> None:
    before = _layer(probe_lab.lab, "c1")
    assert probe_lab.check("c1").hosts[0].verdict is Verdict.CONFORMANT
    assert _layer(probe_lab.lab, "c1") == before


def test_unknown_key_refused_then_trusted_on_first_use(probe_lab: ProbeLab, tmp_path: Path) -> None:
    text = probe_lab.inventory.read_text().replace(
        str(probe_lab.lab.known_hosts_path), str(tmp_path / "empty_known_hosts")
    )
    inventory = tmp_path / "inventory.yaml"
    inventory.write_text(text)
    state = probe_lab.state
    own = state / "known_hosts"
    own.unlink(missing_ok=True)
    (host,) = probe_lab.check("c2", inventory=inventory).hosts
    assert (host.verdict, host.reason) == (Verdict.UNREACHABLE, "host-key")
    assert "unknown host key" in host.detail and "--accept-new" in host.detail
    (host,) = probe_lab.check("c2", inventory=inventory, accept_new=True).hosts
    assert host.verdict is Verdict.CONFORMANT
    assert f"[{NET}11]:2200 ssh-ed25519 " in own.read_text()
    (host,) = probe_lab.check("c2", inventory=inventory).hosts  # now known
    assert host.verdict is Verdict.CONFORMANT
    own.unlink()


def test_a_changed_key_is_refused_even_with_accept_new(probe_lab: ProbeLab) -> None:
    (host,) = probe_lab.check("keychg", accept_new=True).hosts
    assert (host.verdict, host.reason) == (Verdict.UNREACHABLE, "host-key")


def test_waivers_count_until_they_expire(probe_lab: ProbeLab) -> None:
    def waiver(expires: date) -> Waiver:
        return Waiver(
            hosts=["d-sysctl"],
            kind=DriftKind.SYSCTL,
            target="vm.swappiness",
            reason="kernel team",
            expires=expires,
        )

    today = date.today()
    (host,) = probe_lab.check("d-sysctl", waivers=[waiver(today + timedelta(days=1))]).hosts
    assert host.verdict is Verdict.CONFORMANT
    assert [i.waived for i in host.items] == [f"kernel team (until {today + timedelta(days=1)})"]
    report = probe_lab.check("d-sysctl", waivers=[waiver(today - timedelta(days=1))])
    assert report.hosts[0].verdict is Verdict.DRIFTED
    assert report.expired_waivers


def test_waivers_file_next_to_the_inventory(probe_lab: ProbeLab) -> None:
    path = probe_lab.inventory.with_name("inventory.waivers.yaml")
    path.write_text(
        "waivers:\n  - hosts: [d-svc]\n    kind: service\n    target: probe-daemon\n"
        f"    reason: replaced by a timer\n    expires: {date.today() + timedelta(days=30)}\n"
    )
    try:
        code, out = probe_lab.cli("-v", "d-svc")
        assert code == 0
        assert "waived: replaced by a timer" in out
    finally:
        path.unlink()


def test_history_shows_when_a_host_started_drifting(probe_lab: ProbeLab) -> None:
    probe_lab.cli("d-file")
    probe_lab.cli("d-file")
    result = CliRunner().invoke(
        app, ["--state-dir", str(probe_lab.state), "history", "d-file", "--format", "json"]
    )
    data = json.loads(result.stdout)
    verdicts = [c["verdict"] for c in data["checks"]]
    assert verdicts[:2] == ["drifted", "drifted"]
    assert data["since"] == data["checks"][len(verdicts) - 1]["at"] or data["since"]


def test_proxyjump_through_a_bastion(probe_lab: ProbeLab, tmp_path: Path) -> None:
    inventory = yaml.safe_load(probe_lab.inventory.read_text())
    c2 = inventory["all"]["hosts"]["c2"]
    c2["ansible_ssh_common_args"] = (
        inventory["all"]["vars"]["ansible_ssh_common_args"] + f" -o ProxyJump=root@{NET}10:2200"
    )
    path = tmp_path / "jump.yaml"
    path.write_text(yaml.safe_dump(inventory))
    (host,) = probe_lab.check("c2", inventory=path).hosts
    assert host.verdict is Verdict.CONFORMANT
    probe_lab.lab.break_host("c1", Fault.HANG)  # the bastion hangs: c2 is out of reach
    try:
        (host,) = probe_lab.check("c2", inventory=path).hosts
        assert (host.verdict, host.reason) == (Verdict.UNREACHABLE, "timeout")
    finally:
        probe_lab.lab.heal_fault("c1", Fault.HANG)
