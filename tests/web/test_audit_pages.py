"""Auditor pages: search in scope with every filter, the case history (timeline with data
diffs, verification verdict, replay markers per event), the bundle download, the printable
page — and who may: a grid member gets 403, an auditor out of scope 404, bad input 422."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from sqlalchemy import select, text

from tests.append_only import events_writable
from tests.integration.test_audit_replay import play_scenario
from tests.web.conftest import PASSWORD, csrf_token, sign_in

ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ROOT / "bpmn" / "incident_abcd" / "scenarios"


@pytest.fixture
def audit_world(app, with_passwords):
    """Two auditors (street-wide, and community C2 only) and three closed/open cases in C1."""
    from app.db import commit, db
    from app.people import service as people
    from app.people.service import _hasher

    with app.app_context():
        for username, grid in (("auditor", "S"), ("auditor_c2", "S-C2")):
            user = people.create_user(username, username, None)
            user.password_hash = _hasher.hash(PASSWORD)
            people.grant_role(user, "auditor", people.grid_by_code(grid))
        commit()
        refs = {
            "rework": play_scenario(SCENARIOS / "07_b_rework_twice_to_c.json"),
            "overdue": play_scenario(SCENARIOS / "10_d_overdue_rework.json"),
            "a_closed": play_scenario(SCENARIOS / "04_a_closed.json"),
        }
        db.session.remove()
    return refs


def test_grid_member_gets_403_and_no_nav_entry(app, client, audit_world):
    sign_in(client, "member")
    assert client.get("/audit/").status_code == 403
    assert client.get(f"/audit/cases/{audit_world['rework']}").status_code == 403
    assert client.get(f"/audit/cases/{audit_world['rework']}/bundle").status_code == 403
    assert 'href="/audit/"' not in client.get("/work/mine").get_data(as_text=True)


def test_auditor_out_of_scope_gets_404_and_sees_nothing(app, client, audit_world):
    sign_in(client, "auditor_c2")
    for suffix in ("", "/diagram", "/bundle", "/print"):
        assert client.get(f"/audit/cases/{audit_world['rework']}{suffix}").status_code == 404, suffix
    page = client.get("/audit/").get_data(as_text=True)
    assert audit_world["rework"] not in page


def test_search_filters(app, client, audit_world):
    sign_in(client, "auditor")
    page = client.get("/audit/")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'href="/audit/"' in html  # nav entry
    for ref in audit_world.values():
        assert ref in html

    def found(query: str) -> set[str]:
        response = client.get(f"/audit/?{query}")
        assert response.status_code == 200, response.get_data(as_text=True)
        return set(re.findall(r'data-reference="([^"]+)"', response.get_data(as_text=True)))

    everything = set(audit_world.values())
    assert found(f"reference={audit_world['rework']}") == {audit_world["rework"]}
    assert found("process=incident_abcd") == everything
    assert found("process=appeal_loop") == set()
    assert found("grid=S-C1") == everything and found("grid=S-C2") == set()
    assert found("status=completed") == everything
    assert found("status=active") == set()
    assert found("from=2026-01-01&to=2026-12-31") == everything
    assert found("from=2025-01-01&to=2025-12-31") == set()
    assert found("actor=community") >= {audit_world["rework"]}
    assert found("actor=nobody") == set()
    assert found("reworked=1") == {audit_world["rework"], audit_world["overdue"]}
    assert audit_world["overdue"] in found("escalated=1")
    assert audit_world["a_closed"] not in found("escalated=1")
    assert found("overdue=1") == set()  # all closed: nothing open past its deadline


@pytest.mark.parametrize("query", ["from=yesterday", "status=lost", "from=2026-05-01&to=2026-04-01", "grid=NOPE"])
def test_bad_search_input_is_shown_in_place(app, client, audit_world, query):
    sign_in(client, "auditor")
    response = client.get(f"/audit/?{query}")
    assert response.status_code == 422
    assert 'role="alert"' in response.get_data(as_text=True)


def test_case_history_timeline_diff_verdict_and_markers(app, client, audit_world):
    sign_in(client, "auditor")
    reference = audit_world["rework"]
    response = client.get(f"/audit/cases/{reference}")
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert 'data-verdict="ok"' in html
    assert html.count('class="event kind-') >= 12
    assert 'class="diff"' in html                       # the data each step changed
    assert "rework_count" in html or "返工" in html
    markers = json.loads(re.search(r'id="audit-markers">(.*?)</script>', html, re.S).group(1))
    assert markers["1"]["current"] == ["register"] and markers["1"]["completed"].get("start_reported") == 1
    last = markers[str(max(map(int, markers)))]
    assert last["current"] == [] and last["completed"]["community_handle"] == 2

    # The diagram as it was after event 3 (register done, the community's acceptance ready).
    diagram = client.get(f"/audit/cases/{reference}/diagram?seq=3").get_json()
    assert diagram["seq"] == 3 and "<bpmn" in diagram["xml"]
    completed = {m["id"]: m["count"] for m in diagram["completed"]}
    assert completed.get("register") == 1 and "chief_close" not in completed
    assert diagram["current"] == markers["3"]["current"]
    stepped = client.get(f"/audit/cases/{reference}?seq=3").get_data(as_text=True)
    assert re.search(r'class="event [^"]*selected[^"]*" id="event-3"', stepped)


def test_history_shows_a_tampered_event(app, client, audit_world):
    from app.db import db

    reference = audit_world["a_closed"]
    with app.app_context():
        with db.engine.begin() as conn, events_writable(conn):
            conn.execute(text("UPDATE case_events SET actor = 'mallory' WHERE seq = 2 AND case_id = "
                              "(SELECT id FROM cases WHERE reference = :r)"), {"r": reference})
    sign_in(client, "auditor")
    html = client.get(f"/audit/cases/{reference}").get_data(as_text=True)
    assert 'data-verdict="hash_mismatch"' in html
    assert re.search(r'class="event [^"]*problem[^"]*" id="event-2"', html)


def test_bundle_download_and_printable_page(app, client, audit_world):
    from app.audit.bundle import verify_bundle

    sign_in(client, "auditor")
    reference = audit_world["overdue"]
    response = client.get(f"/audit/cases/{reference}/bundle")
    assert response.status_code == 200
    assert f'{reference}-history.json' in response.headers["Content-Disposition"]
    bundle = json.loads(response.get_data(as_text=True))
    assert bundle["case"]["reference"] == reference and bundle["exported_by"] == "auditor"
    assert all(len(e["hash"]) == 64 for e in bundle["events"])
    assert any(f["name"].endswith("incident_abcd.bpmn") for f in bundle["versions"][0]["files"])
    assert verify_bundle(bundle).verdict.ok

    printable = client.get(f"/audit/cases/{reference}/print")
    assert printable.status_code == 200
    html = printable.get_data(as_text=True)
    assert "@media print" not in html and "audit.css" in html
    assert bundle["case"]["head_hash"] in html


def test_admin_sees_every_case(app, client, audit_world):
    from app.db import commit, db
    from app.people.models import User
    from app.people.service import _hasher

    with app.app_context():
        db.session.scalar(select(User).where(User.username == "admin")).password_hash = _hasher.hash(PASSWORD)
        commit()
        db.session.remove()
    sign_in(client, "admin")
    assert client.get(f"/audit/cases/{audit_world['rework']}").status_code == 200
    assert client.get("/audit/").status_code == 200


def test_english_labels(app, client, audit_world):
    sign_in(client, "auditor")
    client.post("/language", data={"language": "en", "csrf_token": _token(client)})
    html = client.get(f"/audit/cases/{audit_world['rework']}").get_data(as_text=True)
    assert "Verification" in html and "Replay on the diagram" in html


def _token(client):
    from tests.web.conftest import csrf_token

    return csrf_token(client.get("/audit/").get_data(as_text=True))


def test_auditors_only_read_the_case_page(app, client, audit_world):
    from tests.web.conftest import csrf_token

    sign_in(client, "auditor")
    reference = audit_world["rework"]
    page = client.get(f"/cases/{reference}")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert 'name="text"' not in html  # no note form
    response = client.post(f"/cases/{reference}/notes", data={"text": "审计意见", "csrf_token": csrf_token(html)})
    assert response.status_code == 403


def test_an_auditor_lands_on_the_audit_search_and_a_handler_on_their_work(app, client, audit_world):
    response = sign_in(client, "auditor")
    assert response.status_code == 302
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/audit/")
    client.post("/logout", data={"csrf_token": csrf_token(client.get("/audit/").get_data(as_text=True))})
    sign_in(client, "member")
    home = client.get("/")
    assert home.status_code == 302 and "/work/" in home.headers["Location"]
