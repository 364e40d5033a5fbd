"""The example image's PostgreSQL re-seed, end to end, against real servers in the lab.

`images/postgres.yaml`'s position, health and re-seed commands, taken as they
are, re-seed standbys with pg_basebackup from a primary: the first from the only
healthy peer; the second with three copies whose data files differ on disk,
which `compare: position` lets through where a majority of manifests would not.
Only the hooks are the lab's: its hosts have no service manager, so pg_ctl.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from fleetmend.fleet import Fleet
from fleetmend.lab import Lab
from tests.integration.lab_helpers import CliLab, require_root, run, write_replica_set

NET = "127.77.205."
HOSTS = ("p1", "p2", "p3")
PGDATA = "/srv/pg"
BIN = "/usr/lib/postgresql/15/bin"
REPO = Path(__file__).resolve().parents[2]

# the host's own address, from its SSH session: each server listens on its host's only
AS_PG = "runuser -u postgres --"
START = (
    "mkdir -p /var/run/postgresql && chown postgres: /var/run/postgresql && "
    'addr=$(echo "$SSH_CONNECTION" | cut -d" " -f3) && '
    f"{AS_PG} {BIN}/pg_ctl -D {PGDATA} -l /tmp/pg.log -w "
    '-o "-c listen_addresses=$addr -c unix_socket_directories=/var/run/postgresql" start'
)
STOP = f"{AS_PG} {BIN}/pg_ctl -D {PGDATA} -m fast -w stop"
SQL = f"{AS_PG} psql -XAtc"


def write_inputs(root: Path) -> tuple[Path, Path]:
    example = yaml.safe_load((REPO / "images" / "postgres.yaml").read_text())
    volume = example["volumes"]["pgdata"]
    image = {
        "name": "pg",
        "version": "1",
        "volumes": {
            "pgdata": {
                "path": PGDATA,
                "owner": "postgres",
                "group": "postgres",
                "mode": "0700",
                # the example's own commands
                "position": volume["position"],
                "health": volume["health"],
                "reseed": volume["reseed"],
                "hooks": {
                    "before_reseed": f"if [ -f {PGDATA}/postmaster.pid ]; then {STOP}; fi",
                    "after_reseed": START,
                },
            }
        },
    }
    return write_replica_set(root, image, NET, HOSTS, pg_replication_user="replicator")


PRIMARY = (
    f"rm -rf {PGDATA} && mkdir -p {PGDATA} && chown postgres: {PGDATA} && "
    f"{AS_PG} {BIN}/initdb -D {PGDATA} --auth=trust >/dev/null && "
    f"printf 'host all all {NET}0/24 trust\\nhost replication all {NET}0/24 trust\\n' "
    f">> {PGDATA}/pg_hba.conf && "
    f"{START} >/dev/null && "
    f'{SQL} "create role replicator replication login" && '
    f'{SQL} "create table t as select generate_series(1, 1000) as n"'
)


@pytest.fixture(scope="module")
def pg(tmp_path_factory: pytest.TempPathFactory) -> Iterator[CliLab]:
    require_root()
    if shutil.which("pg_basebackup") is None or not Path(BIN, "initdb").exists():
        pytest.fail(
            "PostgreSQL 15 is not installed: `make test` installs it "
            "(scripts/install-system-deps.sh --test)",
            pytrace=False,
        )
    root = tmp_path_factory.mktemp("pg")
    images, inventory = write_inputs(root)
    lab = Lab(root / "state")
    try:
        lab.up_fleet(Fleet.load(images, inventory))
        run(lab, "p1", PRIMARY)
        yield CliLab(lab, images, root / "state")
    finally:
        lab.down()  # its servers with it


def rows(pg: CliLab, host: str) -> str:
    return run(pg.lab, host, f"{SQL} 'select count(*), sum(n) from t'").strip()


def wait_rows(pg: CliLab, host: str, count: int) -> None:
    """Until `host` has replayed the primary's rows (a standby streams them)."""
    query = f"{SQL} 'select count(*) from t'"
    run(pg.lab, host, f'for i in $(seq 100); do [ "$({query})" = {count} ] && exit 0; '
        "sleep 0.1; done; exit 1")  # fmt: skip


def test_1_a_standby_comes_back_from_the_only_healthy_peer(pg: CliLab) -> None:
    code, out, _ = pg.cli("reseed", "p2", "--yes")
    assert code == 5 and "2 of 3 hosts look failed" in out  # both standbys are empty
    code, _, err = pg.cli("reseed", "p2", "--yes", "--override-trip-wire", "standbys lost")
    assert code == 0, err
    assert "pgdata from p1: restored by its command (fetched by the target)" in err
    assert run(pg.lab, "p2", f"{SQL} 'select pg_is_in_recovery()'").strip() == "t"
    assert rows(pg, "p2") == rows(pg, "p1") == "1000|500500"


def test_2_three_copies_differing_on_disk_are_compared_by_position(pg: CliLab) -> None:
    run(pg.lab, "p1", f"{SQL} 'insert into t select generate_series(1001, 1500)'")
    # p2 streams from p1; once it has replayed everything, both are equally fresh
    wait_rows(pg, "p2", 1500)
    code, _, err = pg.cli("reseed", "p3", "--yes")
    assert code == 0, err
    assert "restored by its command (fetched by the target)" in err
    assert rows(pg, "p3") == rows(pg, "p1") == "1500|1125750"
    run(pg.lab, "p1", f"{SQL} 'insert into t values (0)'")  # p3 follows the primary
    wait_rows(pg, "p3", 1501)
