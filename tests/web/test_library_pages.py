"""Process library pages: who may use them, the draft editor's endpoints, hostile uploads
through the page, deployment, diff and migration of running cases."""
from __future__ import annotations

import io
import re
from pathlib import Path

import pytest

from tests.web.conftest import PASSWORD, csrf_token, sign_in


@pytest.fixture
def owner(app, with_passwords):
    from app.db import commit
    from app.people import service as people
    from app.people.service import _hasher

    with app.app_context():
        user = people.create_user("owner", "流程管理员", None)
        user.password_hash = _hasher.hash(PASSWORD)
        people.grant_role(user, "process_owner", people.grid_by_code("S"))
        commit()
    return with_passwords


@pytest.fixture
def owner_client(app, owner):
    client = app.test_client()
    assert sign_in(client, "owner").status_code == 302
    return client


def token(client, url):
    return csrf_token(client.get(url).get_data(as_text=True))


def counts(app):
    from sqlalchemy import func, select

    from app.db import db
    from app.library.models import ProcessDraft
    from app.processes.models import ProcessVersion, StoredFile

    with app.app_context():
        result = (db.session.scalar(select(func.count()).select_from(ProcessVersion)),
                  db.session.scalar(select(func.count()).select_from(StoredFile)),
                  [(d.process_id, d.revision, dict(d.files)) for d in db.session.scalars(select(ProcessDraft))])
        db.session.remove()
        return result


@pytest.mark.parametrize("url", ["/library", "/library/grid_quick", "/library/grid_quick/v1",
                                 "/library/grid_quick/v1/diagram", "/library/grid_quick/diff"])
def test_a_grid_member_gets_403(app, owner, url):
    client = app.test_client()
    sign_in(client, "member")
    assert client.get(url).status_code == 403


def test_anonymous_visitors_are_sent_to_sign_in(app, owner):
    response = app.test_client().get("/library")
    assert response.status_code in (302, 401)


def test_grid_member_cannot_post_to_a_draft(app, owner):
    client = app.test_client()
    sign_in(client, "member")
    csrf = csrf_token(client.get("/work/mine").get_data(as_text=True)) if client.get("/work/mine").status_code == 200 else ""
    response = client.post("/library/grid_quick/draft", data={"csrf_token": csrf})
    assert response.status_code == 403
    assert counts(app)[2] == []


def test_pages_list_processes_versions_and_cases(app, owner_client):
    page = owner_client.get("/library").get_data(as_text=True)
    assert "incident_abcd" in page and "grid_quick" in page
    page = owner_client.get("/library/incident_abcd").get_data(as_text=True)
    assert "v1" in page and "first version" in page or "第一个版本" in page
    response = owner_client.get("/library/incident_abcd/v1/diagram")
    assert response.status_code == 200 and "<bpmn:process" in response.get_json()["xml"]
    page = owner_client.get("/library/incident_abcd/v1").get_data(as_text=True)
    assert "incident_catalogue.dmn" in page
    download = owner_client.get("/library/incident_abcd/v1/files/incident_abcd/incident_catalogue.dmn")
    assert download.status_code == 200 and b"<" in download.data
    assert owner_client.get("/library/nope").status_code == 404


def _open(client, process="grid_quick"):
    response = client.post(f"/library/{process}/draft", data={"csrf_token": token(client, f"/library/{process}")})
    assert response.status_code == 302
    return client.get(f"/library/{process}/draft")


def test_hostile_page_uploads_are_refused_in_place(app, owner_client):
    editor = _open(owner_client)
    assert editor.status_code == 200
    csrf = csrf_token(editor.get_data(as_text=True))
    before = counts(app)
    from tests.integration.test_library_api import hostile_files

    cases = [(name, content) for name, content, _ in hostile_files(app).values()]
    for name, content in cases:
        response = owner_client.post("/library/grid_quick/draft/upload", content_type="multipart/form-data",
                                     data={"csrf_token": csrf, "files": [(io.BytesIO(content), name)]})
        assert response.status_code == 422
        html = response.get_data(as_text=True)
        assert 'id="upload-error"' in html and name in html
    junk = b"A" * (10 * 1024 * 1024)
    # Built here: the test client would spool a 10 MB body to a temporary file it never closes.
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n" + csrf.encode()
            + b"\r\n--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"grid_quick.bpmn\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + junk + b"\r\n--b0undary--\r\n")
    response = owner_client.post("/library/grid_quick/draft/upload", data=body,
                                 content_type="multipart/form-data; boundary=b0undary")
    assert response.status_code == 422
    assert "at most" in response.get_data(as_text=True) or "最多" in response.get_data(as_text=True)
    assert counts(app) == before


def test_editor_save_validate_scenarios_deploy_diff_and_migrate(app, owner_client, owner):
    # a running case on v1
    member = app.test_client()
    from tests.integration.helpers import call

    started = call(app.test_client(), owner, "POST", "/api/cases", "member",
                   json={"process_id": "grid_quick", "title": "东门垃圾", "grid": "S-C1-G1", "data": {}})
    reference = started.get_json()["reference"]
    del member

    editor = _open(owner_client)
    csrf = csrf_token(editor.get_data(as_text=True))
    headers = {"X-CSRFToken": csrf}
    name = re.search(r'data-file="([^"]+)"', editor.get_data(as_text=True)).group(1)
    xml = owner_client.get(f"/library/grid_quick/draft/files/{name}").get_data(as_text=True)

    broken = re.sub(r'<bpmn:sequenceFlow id="[^"]+" sourceRef="register" targetRef="[^"]+"\s*/>', "", xml, count=1)
    assert broken != xml
    response = owner_client.post(f"/library/grid_quick/draft/files/{name}", json={"content": broken}, headers=headers)
    assert response.status_code == 200, response.get_json()
    issues = response.get_json()["issues"]
    assert any(i["element_id"] == "register" and i["code"] == "flow_broken" for i in issues), issues
    deploy = owner_client.post("/library/grid_quick/draft/deploy", data={"csrf_token": csrf})
    assert deploy.status_code == 422 and 'id="deploy-error"' in deploy.get_data(as_text=True)

    fixed = xml.replace('name="结案"', 'name="值班长结案"', 1)
    response = owner_client.post(f"/library/grid_quick/draft/files/{name}", json={"content": fixed}, headers=headers)
    assert response.get_json()["issues"] == []
    assert owner_client.post("/library/grid_quick/draft/validate", headers=headers).get_json()["ok"]
    result = owner_client.post("/library/grid_quick/draft/scenarios", headers=headers).get_json()
    assert result["ok"] and all(r["passed"] for r in result["results"]) and result["coverage"], result

    deploy = owner_client.post("/library/grid_quick/draft/deploy", data={"csrf_token": csrf, "note": "结案改名"})
    assert deploy.status_code == 302 and deploy.headers["Location"].endswith("/library/grid_quick/v2")
    assert counts(app)[2] == []  # the draft is gone

    page = owner_client.get("/library/grid_quick/diff?a=1&b=2").get_data(as_text=True)
    assert 'data-element="close"' in page and "值班长结案" in page

    preview = owner_client.get("/library/grid_quick/v1/migrate?to=2")
    html = preview.get_data(as_text=True)
    assert f'data-reference="{reference}" data-safe="yes"' in html
    response = owner_client.post("/library/grid_quick/v1/migrate",
                                 data={"csrf_token": csrf_token(html), "to": "2", "reference": reference})
    assert response.status_code == 302
    from sqlalchemy import select

    from app.cases.models import Case, CaseEvent
    from app.db import db

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference))
        assert case.process_version.version == 2
        event = db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq.desc())).first()
        assert event.kind == "case_migrated"
        assert event.payload["from_version"] == 1 and event.payload["to_version"] == 2
        assert event.payload["content_hash"] == case.process_version.content_hash
        assert event.payload["check"]["safe"] is True
        db.session.remove()


def test_draft_shows_who_and_can_be_discarded(app, owner_client):
    editor = _open(owner_client).get_data(as_text=True)
    assert "owner" in editor
    assert "incident" not in counts(app)[2][0][0]
    page = owner_client.get("/library").get_data(as_text=True)
    assert "owner" in page  # the draft and who has it
    response = owner_client.post("/library/grid_quick/draft/discard", data={"csrf_token": csrf_token(editor)})
    assert response.status_code == 302
    assert counts(app)[2] == []
    # the versions are untouched and a new draft can be opened again
    assert owner_client.get("/library/grid_quick/draft").status_code == 302


def test_a_stale_editor_cannot_overwrite_a_newer_save(app, owner_client):
    editor = _open(owner_client).get_data(as_text=True)
    headers = {"X-CSRFToken": csrf_token(editor)}
    name = re.search(r'data-file="([^"]+)"', editor).group(1)
    revision = int(re.search(r'data-revision="(\d+)"', editor).group(1))
    xml = owner_client.get(f"/library/grid_quick/draft/files/{name}").get_data(as_text=True)
    first = owner_client.post(f"/library/grid_quick/draft/files/{name}", headers=headers,
                              json={"content": xml.replace('name="结案"', 'name="结案A"', 1), "revision": revision})
    assert first.status_code == 200
    before = counts(app)
    stale = owner_client.post(f"/library/grid_quick/draft/files/{name}", headers=headers,
                              json={"content": xml.replace('name="结案"', 'name="结案B"', 1), "revision": revision})
    assert stale.status_code == 409 and stale.get_json()["error"]["code"] == "draft_changed"
    assert counts(app) == before
    bad = owner_client.post(f"/library/grid_quick/draft/files/{name}", headers=headers, json={"content": 5})
    assert bad.status_code == 422 and counts(app) == before


def test_an_upload_over_the_request_limit_gets_a_clear_answer(app, owner_client):
    editor = _open(owner_client).get_data(as_text=True)
    junk = b"A" * (13 * 1024 * 1024)
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"csrf_token\"\r\n\r\n" + csrf_token(editor).encode()
            + b"\r\n--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"grid_quick.bpmn\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + junk + b"\r\n--b0undary--\r\n")
    before = counts(app)
    response = owner_client.post("/library/grid_quick/draft/upload", data=body,
                                 content_type="multipart/form-data; boundary=b0undary")
    assert response.status_code == 413
    assert "提交的内容过大" in response.get_data(as_text=True)
    assert counts(app) == before


def test_navigation_english_and_removing_a_file(app, owner_client, owner):
    member = app.test_client()
    sign_in(member, "member")
    assert 'href="/library"' not in member.get("/work/mine").get_data(as_text=True)
    page = owner_client.get("/library").get_data(as_text=True)
    assert 'href="/library"' in page and "流程库" in page
    owner_client.post("/language", data={"language": "en", "csrf_token": csrf_token(page)})
    editor = _open(owner_client)
    html = editor.get_data(as_text=True)
    assert "Save draft" in html and "Run scenarios" in html and "Deploy as a new version" in html
    assert owner_client.get("/library/grid_quick/diff?a=1&b=1").status_code == 200
    before = len(counts(app)[2][0][2])
    response = owner_client.post("/library/grid_quick/draft/delete/grid_quick/close.form.json",
                                 data={"csrf_token": csrf_token(html)})
    assert response.status_code == 302
    draft_files = counts(app)[2][0][2]
    assert len(draft_files) == before - 1 and "grid_quick/close.form.json" not in draft_files
    # the draft now fails validation (the task's form is missing) and cannot be deployed
    result = owner_client.post("/library/grid_quick/draft/validate", headers={"X-CSRFToken": csrf_token(html)}).get_json()
    assert not result["ok"] and any(i["code"] == "form_missing" for i in result["issues"])


def test_the_dry_run_lists_unsafe_cases_with_reasons_in_chinese(app, owner_client, owner):
    from tests.integration.helpers import call

    reference = call(app.test_client(), owner, "POST", "/api/cases", "member",
                     json={"process_id": "grid_quick", "title": "东门垃圾", "grid": "S-C1-G1", "data": {}}).get_json()["reference"]
    editor = _open(owner_client)
    html = editor.get_data(as_text=True)
    name = re.search(r'data-file="([^"]+)"', html).group(1)
    xml = owner_client.get(f"/library/grid_quick/draft/files/{name}").get_data(as_text=True)
    register = re.search(r'<bpmn:userTask id="register" name="([^"]+)"', xml)
    renamed = xml.replace(register.group(0), register.group(0).replace(register.group(1), "登记（新）"), 1)
    owner_client.post(f"/library/grid_quick/draft/files/{name}", json={"content": renamed},
                      headers={"X-CSRFToken": csrf_token(html)})
    assert owner_client.post("/library/grid_quick/draft/deploy", data={"csrf_token": csrf_token(html)}).status_code == 302
    page = owner_client.get("/library/grid_quick/v1/migrate").get_data(as_text=True)
    assert f'data-reference="{reference}" data-safe="no"' in page
    assert f"{register.group(1)} (register)【当前任务】：已修改（名称）" in page
    assert 'id="migrate-all"' not in page
