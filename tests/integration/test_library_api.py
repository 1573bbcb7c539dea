"""Process library through the API: hostile uploads are refused and change nothing;
a draft is edited, validated, tested, deployed; running cases migrate when safe."""
from __future__ import annotations

import io

import pytest

from tests.integration.helpers import call

XML_HEAD = b'<?xml version="1.0" encoding="UTF-8"?>\n'


@pytest.fixture
def owner(app, world):
    from app.db import commit
    from app.people import service as people

    with app.app_context():
        user = people.create_user("owner", "owner", None)
        people.grant_role(user, "process_owner", people.grid_by_code("S"))
        world.tokens["owner"] = people.issue_token(user, "test")
        commit()
    return world


def counts(app):
    from sqlalchemy import func, select

    from app.db import db
    from app.library.models import ProcessDraft
    from app.processes.models import ProcessVersion, StoredFile

    with app.app_context():
        drafts = [(d.process_id, d.revision, dict(d.files)) for d in db.session.scalars(select(ProcessDraft))]
        result = (db.session.scalar(select(func.count()).select_from(ProcessVersion)),
                  db.session.scalar(select(func.count()).select_from(StoredFile)), drafts)
        db.session.remove()
        return result


def upload(client, world, files, user="owner", process="grid_quick", url=None):
    data = {"files": [(io.BytesIO(content), name) for name, content in files.items()]}
    return call(client, world, "POST", url or f"/api/library/{process}/draft/files", user,
                data=data, content_type="multipart/form-data")


def bpmn_of(app, process="grid_quick") -> bytes:
    from pathlib import Path

    return (Path(app.config["PROCESS_LIBRARY"]) / process / f"{process}.bpmn").read_bytes()


BILLION_LAUGHS = XML_HEAD + b"""<!DOCTYPE lolz [<!ENTITY lol "lol"><!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
<!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;"><!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"><bpmn:process id="grid_quick" isExecutable="true"><bpmn:documentation>&lol4;</bpmn:documentation></bpmn:process></bpmn:definitions>"""
XXE = XML_HEAD + b"""<!DOCTYPE x [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<bpmn:definitions xmlns:bpmn="http://www.omg.org/spec/BPMN/20100524/MODEL" id="d"><bpmn:process id="grid_quick" isExecutable="true"><bpmn:documentation>&xxe;</bpmn:documentation></bpmn:process></bpmn:definitions>"""


def hostile_files(app) -> dict[str, tuple[str, bytes, str]]:
    """label -> (file name, content, a phrase the refusal must contain)."""
    original = bpmn_of(app)
    script_os = original.replace(b"</bpmn:process>", b'<bpmn:scriptTask id="evil"><bpmn:script>import os\nos.system("id")</bpmn:script></bpmn:scriptTask></bpmn:process>', 1)
    return {
        "broken xml": ("grid_quick.bpmn", original[: len(original) // 2], "malformed XML"),
        "billion laughs": ("grid_quick.bpmn", BILLION_LAUGHS, "DOCTYPE"),
        "xxe": ("grid_quick.bpmn", XXE, "DOCTYPE"),
        "script imports os": ("grid_quick.bpmn", script_os, "imports are not allowed"),
        "junk form": ("register.form.json", b"{not json", "invalid JSON"),
        "binary": ("grid_quick.bpmn", b"\xff\xfe\x00junk" * 1000, "not UTF-8"),
    }


@pytest.mark.parametrize("label", ["broken xml", "billion laughs", "xxe", "script imports os", "junk form", "binary"])
def test_hostile_draft_upload_is_refused_and_changes_nothing(app, client, owner, label):
    name, content, phrase = hostile_files(app)[label]
    # a draft exists first, so "no draft changed" is a real check
    assert upload(client, owner, {"handle.form.json": (__import__("pathlib").Path(app.config["PROCESS_LIBRARY"]) / "grid_quick" / "handle.form.json").read_bytes()}).status_code == 200
    before = counts(app)
    response = upload(client, owner, {name: content})
    assert response.status_code == 422, response.get_json()
    error = response.get_json()["error"]
    assert error["code"] == "file_refused"
    assert phrase in str(error["fields"]), error
    assert counts(app) == before


@pytest.mark.parametrize("label", ["broken xml", "billion laughs", "xxe", "script imports os", "junk form"])
def test_hostile_deploy_upload_is_refused_and_deploys_nothing(app, client, owner, label):
    name, content, phrase = hostile_files(app)[label]
    before = counts(app)
    response = upload(client, owner, {name: content}, url="/api/processes")
    assert response.status_code == 422, response.get_json()
    assert phrase in str(response.get_json()["error"]["fields"])
    assert counts(app) == before


def test_ten_megabytes_of_junk_is_refused(app, client, owner):
    junk = b"<" + b"A" * (10 * 1024 * 1024)
    # The multipart body is built here: the test client would spool it to a temporary file.
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"files\"; filename=\"grid_quick.bpmn\"\r\n"
            b"Content-Type: application/octet-stream\r\n\r\n" + junk + b"\r\n--b0undary--\r\n")
    before = counts(app)
    for url in ("/api/processes", "/api/library/grid_quick/draft/files"):
        response = call(client, owner, "POST", url, "owner", data=body,
                        content_type="multipart/form-data; boundary=b0undary")
        assert response.status_code == 413, response.status_code
        assert "larger than" in response.get_json()["error"]["message"]
    assert counts(app) == before


def test_library_api_needs_a_process_owner(app, client, owner):
    assert upload(client, owner, {"x.form.json": b"{}"}, user="member").status_code == 403
    assert call(client, owner, "GET", "/api/library/grid_quick/draft", "member").status_code == 403


def test_draft_upload_validate_scenarios_deploy_and_migrate(app, client, owner):
    # a running case on v1, waiting at the first task
    response = call(client, owner, "POST", "/api/cases", "member",
                    json={"process_id": "grid_quick", "title": "垃圾", "grid": "S-C1-G1", "data": {}})
    assert response.status_code == 201
    reference = response.get_json()["reference"]

    changed = bpmn_of(app).replace('name="结案"'.encode(), 'name="值班长结案"'.encode(), 1)
    assert changed != bpmn_of(app)
    response = upload(client, owner, {"grid_quick.bpmn": changed})
    assert response.status_code == 200, response.get_json()
    assert response.get_json()["issues"] == []
    scenarios = call(client, owner, "POST", "/api/library/grid_quick/draft/scenarios", "owner").get_json()
    assert scenarios["passed"] and scenarios["results"], scenarios
    response = call(client, owner, "POST", "/api/library/grid_quick/draft/deploy", "owner", json={"note": "rename"})
    assert response.status_code == 201, response.get_json()
    assert response.get_json()["version"] == 2
    # new cases use v2
    response = call(client, owner, "POST", "/api/cases", "member",
                    json={"process_id": "grid_quick", "title": "新", "grid": "S-C1-G1", "data": {}})
    assert response.get_json()["process"]["version"] == 2, response.get_json()
    # the running case migrates
    response = call(client, owner, "POST", "/api/library/grid_quick/migrations", "owner",
                    json={"reference": reference, "to_version": 2})
    assert response.status_code == 200, response.get_json()
    case = call(client, owner, "GET", f"/api/cases/{reference}", "admin").get_json()
    assert case["process"]["version"] == 2, case


def test_cli_deploys_one_process_folder_git_style(app, owner, tmp_path):
    """`gridcase process deploy bpmn/<process>`: the seed files stay deployable one process at a time;
    the same content is recognised as the version already deployed from the whole library."""
    import shutil
    from pathlib import Path

    runner = app.test_cli_runner()
    folder = Path(app.config["PROCESS_LIBRARY"]) / "grid_quick"
    result = runner.invoke(args=["process", "deploy", str(folder)])
    assert result.exit_code == 0, result.output
    assert "unchanged grid_quick v1" in result.output
    copy = tmp_path / "grid_quick"
    shutil.copytree(folder, copy)
    bpmn = copy / "grid_quick.bpmn"
    bpmn.write_text(bpmn.read_text(encoding="utf-8").replace('name="结案"', 'name="值班长结案"', 1), encoding="utf-8")
    result = runner.invoke(args=["process", "deploy", str(copy), "--note", "rename"])
    assert result.exit_code == 0, result.output
    assert "deployed grid_quick v2" in result.output


def test_unsafe_cases_are_listed_with_the_reason_and_stay(app, client, owner):
    from tests.grid_quick_data import REGISTER as GQ_REGISTER
    from tests.integration.helpers import complete

    def start(title):
        response = call(client, owner, "POST", "/api/cases", "member",
                        json={"process_id": "grid_quick", "title": title, "grid": "S-C1-G1", "data": {}})
        return response.get_json()["reference"]

    waiting, moved_on = start("还在登记"), start("已登记")
    assert complete(client, owner, moved_on, "register", "member", GQ_REGISTER).status_code == 200
    # v2 renames the first task: unsafe for both (one has it ready, one completed it)… and
    # v2 also renames close: only that would be safe. Rename register only.
    text = bpmn_of(app).decode("utf-8")
    import re

    register = re.search(r'<bpmn:userTask id="register" name="([^"]+)"', text)
    changed = text.replace(register.group(0), register.group(0).replace(register.group(1), register.group(1) + "（新）"), 1)
    assert upload(client, owner, {"grid_quick.bpmn": changed.encode()}).status_code == 200
    assert call(client, owner, "POST", "/api/library/grid_quick/draft/deploy", "owner", json={}).status_code == 201
    before = counts(app)
    response = call(client, owner, "POST", "/api/library/grid_quick/migrations", "owner",
                    json={"from_version": 1, "to_version": 2})
    assert response.status_code == 200, response.get_json()
    body = response.get_json()
    assert body["migrated"] == []
    reasons = {s["reference"]: s["reason"] for s in body["skipped"]}
    assert set(reasons) == {waiting, moved_on}
    assert "register" in reasons[waiting] and "ready" in reasons[waiting]
    assert "register" in reasons[moved_on] and "completed" in reasons[moved_on]
    one = call(client, owner, "POST", "/api/library/grid_quick/migrations", "owner",
               json={"reference": waiting, "to_version": 2})
    assert one.status_code == 409 and one.get_json()["error"]["code"] == "migration_unsafe"
    assert counts(app) == before
    for reference in (waiting, moved_on):
        case = call(client, owner, "GET", f"/api/cases/{reference}", "admin").get_json()
        assert case["process"]["version"] == 1


def test_scenarios_added_in_the_browser_survive_deployment(app, client, owner):
    from pathlib import Path

    folder = Path(app.config["PROCESS_LIBRARY"]) / "grid_quick" / "scenarios"
    first = sorted(folder.glob("*.json"))[0]
    response = upload(client, owner, {"scenarios/99_added_online.json": first.read_bytes()})
    assert response.status_code == 200, response.get_json()
    assert "scenarios/99_added_online.json" in response.get_json()["files"]
    changed = bpmn_of(app).replace('name="结案"'.encode(), 'name="值班长结案"'.encode(), 1)
    assert upload(client, owner, {"grid_quick.bpmn": changed}).status_code == 200
    report = call(client, owner, "POST", "/api/library/grid_quick/draft/scenarios", "owner").get_json()
    assert any(r["file"] == "scenarios/99_added_online.json" and r["passed"] for r in report["results"]), report
    assert call(client, owner, "POST", "/api/library/grid_quick/draft/deploy", "owner", json={}).status_code == 201
    # the next draft starts with it again (and with the folder's own scenarios)
    response = upload(client, owner, {"register.form.json": (folder.parent / "register.form.json").read_bytes()})
    files = response.get_json()["files"]
    assert "scenarios/99_added_online.json" in files
    assert f"scenarios/{first.name}" in files


@pytest.mark.parametrize("name", ["../evil.bpmn", "a/../../evil.bpmn", ".hidden.bpmn", "run.sh", "scenarios/deep/x.json", ""])
def test_unsafe_file_names_are_refused(app, client, owner, name):
    before = counts(app)
    response = upload(client, owner, {name or "x": b"<x/>"} if name else {"": b"<x/>"})
    assert response.status_code == 422, response.get_json()
    assert counts(app) == before
