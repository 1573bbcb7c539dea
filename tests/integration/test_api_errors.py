"""Bad input gets a clear 4xx in one JSON shape and changes nothing."""
from __future__ import annotations

import base64

import pytest
from sqlalchemy import func, select

from tests.integration.helpers import REGISTER, call, complete, open_item, start_case, walk, SELF_PATH


def counts(app) -> dict[str, int]:
    """How many rows every table holds: 'nothing changed' means these stay equal."""
    from app.db import db

    with app.app_context():
        result = {
            table.name: db.session.scalar(select(func.count()).select_from(table))
            for table in db.metadata.sorted_tables
        }
        states = db.session.execute(select(db.metadata.tables["cases"].c.row_version)).scalars().all()
        result["case_versions"] = sum(states)
        db.session.remove()
    return result


def assert_error(response, status: int, code: str | None = None) -> dict:
    assert response.status_code == status, response.get_data(as_text=True)
    body = response.get_json()
    assert set(body) == {"error"}
    assert set(body["error"]) == {"code", "message", "fields"}
    assert body["error"]["message"]
    if code:
        assert body["error"]["code"] == code, body
    return body["error"]


@pytest.fixture
def case(client, world):
    return start_case(client, world)


def test_malformed_json(app, client, world, case):
    before = counts(app)
    response = call(client, world, "POST", "/api/cases", "member", data="{not json", content_type="application/json")
    assert_error(response, 400)
    item = open_item(client, world, case["reference"], "register")
    response = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "member",
                    data='{"data": {', content_type="application/json")
    assert_error(response, 400)
    assert counts(app) == before


@pytest.mark.parametrize(
    "body, field",
    [
        ({"title": "x", "grid": "S-C1-G1"}, "process_id"),
        ({"process_id": "grid_quick", "grid": "S-C1-G1"}, "title"),
        ({"process_id": "grid_quick", "title": "x"}, "grid"),
        ({"process_id": 12, "title": "x", "grid": "S-C1-G1"}, "process_id"),
        ({"process_id": "grid_quick", "title": "", "grid": "S-C1-G1"}, "title"),
        ({"process_id": "grid_quick", "title": "x" * 301, "grid": "S-C1-G1"}, "title"),
        ({"process_id": "grid_quick", "title": "x", "grid": "S-C1-G1", "data": [1, 2]}, "data"),
        ({"process_id": "grid_quick", "title": "x", "grid": "S-C1-G1", "unexpected": 1}, "unexpected"),
    ],
)
def test_start_case_field_errors(app, client, world, body, field):
    before = counts(app)
    error = assert_error(call(client, world, "POST", "/api/cases", "member", json=body), 422, "invalid_input")
    assert field in error["fields"], error
    assert counts(app) == before


def test_start_case_unknown_process_or_grid(app, client, world):
    before = counts(app)
    error = assert_error(
        call(client, world, "POST", "/api/cases", "member", json={"process_id": "nope", "title": "x", "grid": "S-C1-G1"}),
        422, "unknown_process",
    )
    assert "process_id" in error["fields"]
    error = assert_error(
        call(client, world, "POST", "/api/cases", "member", json={"process_id": "grid_quick", "title": "x", "grid": "NOPE"}),
        422, "unknown_grid",
    )
    assert "grid" in error["fields"]
    assert counts(app) == before


def test_start_case_with_reserved_data_key(app, client, world):
    before = counts(app)
    error = assert_error(
        call(client, world, "POST", "/api/cases", "member",
             json={"process_id": "grid_quick", "title": "x", "grid": "S-C1-G1", "data": {"now": 1}}),
        422, "form_invalid",
    )
    assert "now" in error["fields"]
    assert counts(app) == before


def test_form_errors_name_each_field(app, client, world, case):
    before = counts(app)
    bad = {"category": "spaceship", "description": "短", "verified": "yes", "extra": 1}
    error = assert_error(complete(client, world, case["reference"], "register", "member", bad), 422, "form_invalid")
    assert {"category", "description", "verified", "location"} <= set(error["fields"]), error
    assert any("extra" in key or "extra" in " ".join(msgs) for key, msgs in error["fields"].items()), error
    assert counts(app) == before
    # The task is still there and can be completed properly.
    assert complete(client, world, case["reference"], "register", "member", REGISTER).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [({}, "data"), ({"data": "text"}, "data"), ({"data": {}, "expected_version": "x"}, "expected_version")],
)
def test_complete_field_errors(app, client, world, case, body, field):
    item = open_item(client, world, case["reference"], "register")
    before = counts(app)
    error = assert_error(call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "member", json=body), 422)
    assert field in error["fields"]
    assert counts(app) == before


def test_unknown_ids(client, world):
    assert_error(call(client, world, "GET", "/api/cases/SJ-2026-999999"), 404, "not_found")
    assert_error(call(client, world, "GET", "/api/cases/SJ-2026-999999/events"), 404, "not_found")
    assert_error(call(client, world, "POST", "/api/work-items/999999/claim", "member"), 404, "not_found")
    assert_error(call(client, world, "POST", "/api/work-items/999999/complete", "member", json={"data": {}}), 404)
    assert_error(call(client, world, "GET", "/api/no-such-endpoint"), 404)
    assert_error(call(client, world, "DELETE", "/api/cases"), 405)


def test_completing_a_done_task_is_a_conflict(app, client, world, case):
    item = open_item(client, world, case["reference"], "register")
    url = f"/api/work-items/{item['id']}/complete"
    assert call(client, world, "POST", url, "member", json={"data": REGISTER}).status_code == 200
    before = counts(app)
    assert_error(call(client, world, "POST", url, "member", json={"data": REGISTER}), 409, "task_not_open")
    assert counts(app) == before


def test_stale_expected_version_is_a_conflict(app, client, world, case):
    item = open_item(client, world, case["reference"], "register")
    before = counts(app)
    assert_error(
        call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "member",
             json={"data": REGISTER, "expected_version": case["row_version"] + 5}),
        409, "stale_version",
    )
    assert counts(app) == before
    response = call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "member",
                    json={"data": REGISTER, "expected_version": case["row_version"]})
    assert response.status_code == 200


def test_oversized_body(app, client, world, case):
    item = open_item(client, world, case["reference"], "register")
    before = counts(app)
    huge = {"data": {**REGISTER, "description": "x" * (app.config["API_MAX_CONTENT_LENGTH"] + 10)}}
    assert_error(call(client, world, "POST", f"/api/work-items/{item['id']}/complete", "member", json=huge), 413)
    assert counts(app) == before


def test_bad_query_parameters(client, world):
    error = assert_error(call(client, world, "GET", "/api/work-items?page=0"), 422)
    assert "page" in error["fields"]
    error = assert_error(call(client, world, "GET", "/api/work-items?page_size=100000"), 422)
    assert "page_size" in error["fields"]
    error = assert_error(call(client, world, "GET", "/api/work-items?state=bogus"), 422)
    assert "state" in error["fields"]
    error = assert_error(call(client, world, "GET", "/api/work-items?overdue=perhaps"), 422)
    assert "overdue" in error["fields"]
    assert_error(call(client, world, "GET", "/api/work-items?grid=NOPE"), 422, "unknown_grid")


def test_authentication_is_required(client, world):
    assert_error(client.get("/api/work-items"), 401, "not_authenticated")
    assert_error(client.get("/api/cases/SJ-2026-000001", headers={"Authorization": "Bearer wrong"}), 401)
    assert_error(client.get("/api/me", headers={"Authorization": "Basic !!!"}), 401)
    bad_basic = base64.b64encode(b"member:wrong").decode()
    assert_error(client.get("/api/me", headers={"Authorization": f"Basic {bad_basic}"}), 401)


def test_basic_auth_with_a_password(app, client, world):
    from app.db import commit
    from app.people import service as people

    with app.app_context():
        people.create_user("withpass", "有密码的人", "s3cret-pass")
        commit()
    good = base64.b64encode("withpass:s3cret-pass".encode()).decode()
    response = client.get("/api/me", headers={"Authorization": f"Basic {good}"})
    assert response.status_code == 200
    assert response.get_json()["username"] == "withpass"


def test_a_failing_process_step_changes_nothing(app, client, world, case, monkeypatch):
    """If the engine fails half-way (here: a gateway script error), the case is untouched."""
    from workflows.engine import CaseRun
    from workflows.errors import ProcessFailed

    walk(client, world, case["reference"], SELF_PATH[:1])
    before = counts(app)

    def explode(self, steps):
        raise ProcessFailed("the process could not continue at gw_decision: boom")

    monkeypatch.setattr(CaseRun, "_engine_steps", explode)
    error = assert_error(complete(client, world, case["reference"], "review", "community", SELF_PATH[1][2]), 422, "process_failed")
    assert "gw_decision" in error["message"]
    assert counts(app) == before
