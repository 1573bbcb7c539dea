"""Deploying process files over the API: all or nothing, errors by file and line."""
from __future__ import annotations

import io
from pathlib import Path

from sqlalchemy import func, select

from tests.integration.helpers import call

ROOT = Path(__file__).resolve().parents[2]
QUICK = ROOT / "bpmn" / "grid_quick"


def _grant_process_owner(app):
    from app.db import commit
    from app.people import service as people

    with app.app_context():
        people.grant_role(people.user_by_username("supervisor"), "process_owner", people.grid_by_code("S"))
        commit()


def _versions(app) -> int:
    from app.db import db
    from app.processes.models import ProcessVersion

    with app.app_context():
        count = db.session.scalar(select(func.count()).select_from(ProcessVersion))
        db.session.remove()
        return count


def _upload(client, world, user, files: dict[str, bytes], note=None):
    data = {"files": [(io.BytesIO(content), name) for name, content in files.items()]}
    if note:
        data["note"] = note
    return call(client, world, "POST", "/api/processes", user, data=data, content_type="multipart/form-data")


def _quick_files(change=None) -> dict[str, bytes]:
    files = {f"grid_quick/{p.name}": p.read_bytes() for p in QUICK.iterdir() if p.is_file()}
    if change:
        files["grid_quick/grid_quick.bpmn"] = change(files["grid_quick/grid_quick.bpmn"])
    return files


def test_a_changed_process_becomes_a_new_version(app, client, world):
    _grant_process_owner(app)
    same = _upload(client, world, "supervisor", _quick_files())
    assert same.status_code == 201, same.get_json()
    assert same.get_json()["deployed"] == [] and same.get_json()["unchanged"][0]["version"] == 1
    changed = _upload(client, world, "supervisor", _quick_files(lambda b: b.replace(b'"P5D"', b'"P3D"')), note="处置时限改为3天")
    assert changed.status_code == 201
    version = changed.get_json()["deployed"][0]
    assert (version["process_id"], version["version"], version["note"]) == ("grid_quick", 2, "处置时限改为3天")


def test_a_malformed_bpmn_file_is_refused_with_its_line_and_nothing_changes(app, client, world):
    _grant_process_owner(app)
    before = _versions(app)
    files = _quick_files(lambda b: b.replace(b"</bpmn:process>", b"</bpmn:proces>"))
    response = _upload(client, world, "supervisor", files)
    assert response.status_code == 422
    error = response.get_json()["error"]
    assert error["code"] == "invalid_process"
    assert any("line" in message for message in error["fields"]["grid_quick/grid_quick.bpmn"])
    assert _versions(app) == before


def test_an_invalid_expression_is_refused(app, client, world):
    _grant_process_owner(app)
    files = _quick_files(lambda b: b.replace(b'decision == &quot;dispatch', b'decision == = &quot;dispatch'))
    response = _upload(client, world, "supervisor", files)
    assert response.status_code == 422
    (messages,) = response.get_json()["error"]["fields"].values()
    assert any("flow_dispatch" in m or "gw_decision" in m for m in messages), messages


def test_only_process_owners_deploy_and_only_process_files(app, client, world):
    assert _upload(client, world, "member", _quick_files()).status_code == 403
    _grant_process_owner(app)
    odd = _upload(client, world, "supervisor", {"notes.txt": b"hello"})
    assert odd.status_code == 422 and odd.get_json()["error"]["code"] == "unsupported_file"
    none = call(client, world, "POST", "/api/processes", "supervisor", data={}, content_type="multipart/form-data")
    assert none.status_code == 422 and "files" in none.get_json()["error"]["fields"]
