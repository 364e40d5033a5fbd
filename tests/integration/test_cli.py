"""The CLI end to end on the shipped examples and on broken copies of them.

Exit codes and output are both asserted: a command that prints the right thing
with the wrong exit code breaks every cron job and CI pipeline that runs it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from fleetmend import __version__
from fleetmend.cli.app import app
from tests.conftest import write

runner = CliRunner()


@pytest.fixture
def checkout(tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the example images and inventories, as the working directory."""
    shutil.copytree(repo / "images", tmp_path / "images")
    shutil.copytree(repo / "inventories", tmp_path / "inventories")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_version() -> None:
    code, out, _ = run("--version")
    assert (code, out) == (0, f"fleetmend {__version__}\n")


def test_validate_the_shipped_examples(checkout: Path) -> None:
    code, out, err = run("validate", "-v")
    assert code == 0, err
    assert "ok: 5 images, 3 inventories, 24 hosts rendered" in out
    assert "inventories/lab.yaml: 8 hosts rendered" in out


def test_validate_lists_every_problem_of_a_broken_copy(checkout: Path) -> None:
    images = checkout / "images"
    web = images / "web.yaml"
    web.write_text(web.read_text().replace('version: "2.10"', "version: 2.10"))
    (images / "templates" / "redis.conf.j2").write_text("maxmemory {{ kv_maxmem }}\n")
    write(images / "loop.yaml", 'name: loop\nversion: "1"\nextends: loop\n')
    lab = checkout / "inventories" / "lab.yaml"
    lab.write_text(lab.read_text().replace("fleetmend_image: blobstore", "fleetmend_image: blob"))
    code, out, _ = run("--format", "json", "validate")
    assert code == 2
    report = json.loads(out)
    assert not report["ok"]
    lines = sorted(f"{p['file']}:{p['place']}: {p['message']}" for p in report["problems"])
    assert lines == [
        "images/loop.yaml:3: extends: extends cycle: loop -> loop",
        "images/templates/redis.conf.j2:1: 'kv_maxmem' is undefined",
        "images/web.yaml:3: version: unquoted 2.1 is a number in YAML and may lose digits "
        "(1.10 reads as 1.1)",
        "inventories/lab.yaml:38: host blob-1: fleetmend_image: unknown image 'blob'",
        "inventories/lab.yaml:38: host blob-2: fleetmend_image: unknown image 'blob'",
        "inventories/lab.yaml:38: host blob-3: fleetmend_image: unknown image 'blob'",
    ]
    (undefined,) = [p for p in report["problems"] if "kv_maxmem" in p["message"]]
    assert undefined["hosts"] == [
        "kv-ams-1.example.com",
        "kv-fra-1.example.com",
        "kv-fra-2.example.com",
        "kv-1",
        "kv-2",
        "kv-3",
    ]
    assert undefined["text"].startswith(
        "images/templates/redis.conf.j2:1: 'kv_maxmem' is undefined (for 6 hosts: kv-ams-1"
    )


def test_validate_table_output_goes_to_stderr_with_exit_2(checkout: Path) -> None:
    write(checkout / "images" / "bad.yaml", "name: bad\nversion: '1'\nfoo: 1\n")
    code, out, err = run("validate")
    assert code == 2
    assert "error: images/bad.yaml:3: foo: unknown field 'foo'" in err
    assert "1 problem(s)" in err
    assert "Traceback" not in out + err


def test_images_list_json(checkout: Path) -> None:
    code, out, _ = run("images", "list", "--format", "json")
    assert code == 0
    rows = {r["name"]: r for r in json.loads(out)["images"]}
    assert set(rows) == {"base", "web", "kv", "blobstore", "postgres"}
    assert rows["web"]["version"] == "2.10"
    assert rows["web"]["extends"] == "base"
    assert len(rows["web"]["digest"]) == 64


def test_images_list_marks_a_broken_image(checkout: Path) -> None:
    (checkout / "images" / "templates" / "motd.j2").write_text("{% if %}\n")
    code, out, _ = run("images", "list")
    assert code == 0
    assert "(errors)" in out
    assert "run `fleetmend validate`" in out


def test_images_show(checkout: Path) -> None:
    code, out, _ = run("images", "show", "kv", "-f", "json")
    assert code == 0
    shown = json.loads(out)
    assert shown["lineage"] == ["base", "kv"]
    assert shown["packages"]["redis-server"] == ">=5:7.0"
    assert "redis.conf.j2" in shown["templates"]
    code, out, _ = run("images", "show", "kv")
    assert code == 0 and shown["digest"] in out


def test_images_render_one_file_raw(checkout: Path) -> None:
    code, out, _ = run(
        "images", "render", "web", "--host", "web-2", "--file", "/etc/nginx/sites-enabled/default"
    )
    assert code == 0
    assert out.startswith("# Managed by fleetmend: image web 2.10.\n")
    assert "server_name www.lab.internal;" in out


def test_images_render_json_is_the_desired_state(checkout: Path) -> None:
    code, out, _ = run(
        "-i",
        "inventories/example-prod.yaml",
        "-f",
        "json",
        "images",
        "render",
        "kv",
        "-H",
        "kv-ams-1.example.com",
    )
    assert code == 0
    state = json.loads(out)
    assert state["host"] == "kv-ams-1.example.com"
    assert "maxmemory 4gb" in state["files"]["/etc/redis/redis.conf"]["content"]


def test_images_render_unknown_host_and_file(checkout: Path) -> None:
    code, _, err = run("images", "render", "web", "--host", "web-9")
    assert code == 2
    assert "unknown host 'web-9'" in err
    code, _, err = run("images", "render", "web", "--host", "web-1", "--file", "/etc/nope")
    assert code == 2
    assert "no file '/etc/nope' in the image" in err


def test_images_diff_exit_codes(checkout: Path) -> None:
    code, out, _ = run("images", "diff", "web", "web")
    assert code == 0 and "identical" in out
    old = checkout / "old" / "images"
    shutil.copytree(checkout / "images", old)
    web = checkout / "images" / "web.yaml"
    web.write_text(web.read_text().replace('version: "2.10"', 'version: "2.11"'))
    code, out, _ = run("images", "diff", "old/images/web.yaml", "web", "-f", "json")
    assert code == 3
    diff = json.loads(out)
    assert diff["changes"] == [
        {"section": "image", "key": "version", "kind": "changed", "before": "2.10", "after": "2.11"}
    ]


def test_inventory_show(checkout: Path) -> None:
    code, out, _ = run("-i", "inventories/example-prod.yaml", "inventory", "show")
    assert code == 0
    assert "bastion.fra.example.com" in out and "unmanaged" in out and "protected" in out
    code, out, _ = run("inventory", "show", "--format", "json")
    data = json.loads(out)
    assert len(data["hosts"]) == 8
    assert {rs["name"] for rs in data["replica_sets"]} == {"web-lab", "kv-lab", "blobs-lab"}


def test_bad_input_is_one_line_without_traceback_unless_debug(checkout: Path) -> None:
    code, _, err = run("-i", "inventories/nope.yaml", "inventory", "show")
    assert code == 2
    assert err.strip() == (
        "error: inventories/nope.yaml: inventory not found "
        "(hint: pass -i FILE or set FLEETMEND_INVENTORY)"
    )
    result = runner.invoke(app, ["--debug", "-i", "inventories/nope.yaml", "inventory", "show"])
    assert result.exit_code != 0
    assert result.exception is not None  # --debug lets the exception through


def test_unknown_command_is_a_usage_error() -> None:
    code, _, err = run("imagez")
    assert code == 2
    assert "No such command" in err


def test_an_unusable_state_database_is_one_line(checkout: Path) -> None:
    (checkout / "state").mkdir()
    (checkout / "state" / "state.db").mkdir()  # a directory where the database must be
    code, _, err = run("--state-dir", "state", "history", "web-1")
    assert code == 1
    assert err.startswith("error: ") and "Traceback" not in err
