"""The audit API: verification verdicts and bundles, with the pages' scope rules."""
from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.helpers import call
from tests.integration.test_audit_replay import play_scenario

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def auditors(app, world):
    from app.db import commit
    from app.people import service as people

    with app.app_context():
        for username, grid in (("auditor", "S"), ("auditor_c2", "S-C2")):
            user = people.create_user(username, username, None)
            people.grant_role(user, "auditor", people.grid_by_code(grid))
            world.tokens[username] = people.issue_token(user, "test")
        commit()
        reference = play_scenario(ROOT / "bpmn" / "grid_quick" / "scenarios" / "self_handle.json")
    return world, reference


def test_verification_and_bundle(app, client, auditors):
    from app.audit.bundle import verify_bundle

    world, reference = auditors
    response = call(client, world, "GET", f"/api/audit/cases/{reference}/verification", "auditor")
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["ok"] is True and body["problem"] is None and body["events"] >= 6
    assert body["line"].startswith(f"OK {reference}")
    bundle = call(client, world, "GET", f"/api/audit/cases/{reference}/bundle", "auditor").get_json()
    assert bundle["case"]["head_hash"] == body["head_hash"]
    assert verify_bundle(bundle).verdict.ok
    assert call(client, world, "GET", f"/api/audit/cases/{reference}/verification", "admin").status_code == 200


def test_scope(app, client, auditors):
    world, reference = auditors
    response = call(client, world, "GET", f"/api/audit/cases/{reference}/verification", "member")
    assert response.status_code == 403 and response.get_json()["error"]["code"] == "not_auditor"
    response = call(client, world, "GET", f"/api/audit/cases/{reference}/bundle", "auditor_c2")
    assert response.status_code == 404 and response.get_json()["error"]["code"] == "not_found"
    assert call(client, world, "GET", "/api/audit/cases/NOPE/verification", "auditor").status_code == 404
    assert call(client, world, "GET", f"/api/audit/cases/{reference}/verification", None).status_code == 401
