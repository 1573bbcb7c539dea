"""``gridcase case verify`` / ``export``: one case, every case, a bundle offline (the command
runs with a database URL that cannot be reached and an empty instance folder, and creates no
database), a tampered bundle, and input that is not a bundle."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import text

from tests.append_only import events_writable
from tests.integration.test_audit_replay import play_scenario

ROOT = Path(__file__).resolve().parents[2]
GRIDCASE = [sys.executable, "-m", "flask", "--app", "app"]
SCENARIO = ROOT / "bpmn" / "grid_quick" / "scenarios" / "dispatch_overdue.json"


@pytest.fixture
def cases(app, world):
    with app.app_context():
        return [play_scenario(SCENARIO), play_scenario(ROOT / "bpmn" / "grid_quick" / "scenarios" / "self_handle.json")]


def run(app, *args):
    return app.test_cli_runner().invoke(args=["case", *args], catch_exceptions=False)


def test_verify_one_and_all(app, cases):
    result = run(app, "verify", cases[0])
    assert result.exit_code == 0, result.output
    assert result.output.startswith(f"OK {cases[0]}: ")
    assert "chain intact, replay matches" in result.output
    result = run(app, "verify", "--all")
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1].startswith("verified 2 case(s)")
    assert result.output.strip().endswith("2 OK, 0 failed")


def test_verify_all_reports_each_failure_and_exits_1(app, cases):
    from app.db import db

    with app.app_context():
        with db.engine.begin() as conn, events_writable(conn):
            conn.execute(text("UPDATE case_events SET role = 'supervisor' WHERE seq = 2 AND case_id = "
                              "(SELECT id FROM cases WHERE reference = :r)"), {"r": cases[1]})
    result = run(app, "verify", "--all")
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines[0].startswith(f"FAIL {cases[1]}: event 2 (task_completed): hash mismatch")
    assert lines[-1].endswith("1 OK, 1 failed")
    single = run(app, "verify", cases[1])
    assert single.exit_code == 1 and "event 2 (task_completed): hash mismatch" in single.output


def test_usage_and_unknown_case(app, cases):
    assert run(app, "verify").exit_code == 2
    assert run(app, "verify", cases[0], "--all").exit_code == 2
    unknown = run(app, "verify", "SJ-1999-000001")
    assert unknown.exit_code == 2 and "no case SJ-1999-000001" in unknown.output


def _offline_env(tmp_path) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL",)}
    environment["DATABASE_URL"] = "postgresql://nobody@127.0.0.1:1/unreachable"
    environment["GRIDCASE_INSTANCE_PATH"] = str(tmp_path / "instance")
    return environment


def test_export_then_verify_the_bundle_offline(app, cases, tmp_path):
    bundle = tmp_path / "case.json"
    result = run(app, "export", cases[0], "-o", str(bundle))
    assert result.exit_code == 0, result.output
    document = json.loads(bundle.read_text(encoding="utf-8"))
    assert document["format"] == "gridcase-case-bundle" and document["case"]["reference"] == cases[0]
    assert document["case"]["status"] == "completed" and document["case"]["state"]
    for version in document["versions"]:
        assert version["content_hash"] and all(len(f["sha256"]) == 64 for f in version["files"])

    env = _offline_env(tmp_path)
    offline = subprocess.run(GRIDCASE + ["case", "verify", "--bundle", str(bundle)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert offline.returncode == 0, offline.stdout + offline.stderr
    assert offline.stdout.startswith(f"OK {cases[0]}: ")
    assert f"chain head: event {document['case']['head_seq']} {document['case']['head_hash']}" in offline.stdout
    assert not list((tmp_path / "instance").glob("*.sqlite3*"))  # no database was created

    # Tampered: one form value changed in the bundle.
    for event in document["events"]:
        if event["kind"] == "task_completed":
            key = next(iter(event["payload"]["data"]))
            event["payload"]["data"][key] = "changed"
            seq = event["seq"]
            break
    bundle.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    tampered = subprocess.run(GRIDCASE + ["case", "verify", "--bundle", str(bundle)], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"FAIL {cases[0]}: event {seq} (task_completed): hash mismatch" in tampered.stdout

    # A process file changed in the bundle: the version no longer matches its hash.
    document = json.loads(run(app, "export", cases[0], "-o", "-").output)
    entry = next(f for f in document["versions"][0]["files"] if f["name"].endswith(".bpmn"))
    entry["text"] = entry["text"].replace("</bpmn:definitions>", "<!-- -->\n</bpmn:definitions>")
    bundle.write_text(json.dumps(document, ensure_ascii=False), encoding="utf-8")
    changed = subprocess.run(GRIDCASE + ["case", "verify", "--bundle", str(bundle)], cwd=ROOT, env=env,
                             capture_output=True, text=True, timeout=120)
    assert changed.returncode == 1
    assert "unknown version" in changed.stdout and "does not match its sha256" in changed.stdout


def test_not_a_bundle(app, tmp_path):
    path = tmp_path / "junk.json"
    path.write_text('{"hello": 1}', encoding="utf-8")
    result = run(app, "verify", "--bundle", str(path))
    assert result.exit_code == 2 and "not a Gridcase case bundle" in result.output
    path.write_text("not json", encoding="utf-8")
    assert run(app, "verify", "--bundle", str(path)).exit_code == 2
    assert run(app, "verify", "--bundle", str(tmp_path / "missing.json")).exit_code == 2
