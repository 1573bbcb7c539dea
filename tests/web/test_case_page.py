"""The case page: summary, the current task's form (complete, invalid input, conflicts),
uploads, case data with masked phones, history, notes, the diagram's data, and the
supervisor's actions from the page."""
from __future__ import annotations

import io
import re

from PIL import Image

from tests.integration.helpers import HANDLE, REGISTER, REVIEW_SELF, SELF_PATH, call, start_case, walk
from tests.web.conftest import csrf_token, sign_in
from tests.web.test_workspace import (
    ESCAPED, SCRIPT, event_kinds, events, form_data, item_id, page, references,
)


def png_bytes(size=(800, 600)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (30, 120, 200)).save(out, format="PNG")
    return out.getvalue()


def complete_from_page(client, reference: str, item: int, data: dict, files: dict | None = None):
    token = csrf_token(page(client, f"/cases/{reference}"))
    body = {"csrf_token": token, **form_data(data)}
    body.update(files or {})
    return client.post(f"/cases/{reference}/items/{item}/complete", data=body, content_type="multipart/form-data")


def open_tasks(client, world, reference: str) -> list[str]:
    body = call(client, world, "GET", f"/api/cases/{reference}").get_json()
    return [task["task"] for task in body["tasks"]]


def _at_handle(client, world):
    """A case waiting for 社区处置 (community staff), whose form has a photo field."""
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, SELF_PATH[:2])
    return reference, item_id(client, world, reference, "community_handle")


# -- the page ------------------------------------------------------------------------
def test_the_case_page_shows_summary_form_data_history_and_diagram(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world, title="小区东门垃圾堆放")["reference"]
    sign_in(client, "member")
    html = page(client, f"/cases/{reference}")
    assert reference in html and "小区东门垃圾堆放" in html
    assert "网格事件快速处置" in html and "第 1 版" in html and "办理中" in html and "C1一网格" in html
    for section in ("当前任务", "案件数据", "附件", "流程图", "历史记录", "内部备注"):
        assert section in html, section
    # The register task's form: Chinese labels, required marks, choices and yes/no radios.
    assert "登记核实" in html and "事件类别" in html and "事件描述" in html and "现场核实属实" in html
    assert 'class="req"' in html and '<option value="garbage">垃圾堆放</option>' in html
    assert 'name="verified" value="true"' in html and "认领" in html
    assert "请到现场核实上报的事件" in html  # instructions
    assert "案件创建" in html  # history
    assert 'id="case-diagram"' in html and "/static/js/case-diagram.js" in html
    assert "bpmn-navigated-viewer.production.min.js" in html
    assert "事件上报" in html  # the steps list readable without JavaScript


def test_completing_the_register_task_from_the_page_moves_the_case_on(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    item = item_id(client, world, reference, "register")
    sign_in(client, "member")
    response = complete_from_page(client, reference, item, REGISTER)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].endswith(f"/cases/{reference}")
    assert open_tasks(client, world, reference) == ["review"]
    completed = events(client, world, reference)[-1]
    assert completed["kind"] == "task_completed" and completed["actor"] == "member"
    assert completed["payload"]["data"] == REGISTER

    html = page(client, f"/cases/{reference}")
    assert "“登记核实”已提交" in html
    assert "任务完成" in html and "网格员" in html  # history: kind and role label
    assert "垃圾堆放" in html and "小区东门垃圾堆放三天未清运" in html  # case data with labels
    assert "社区研判" in html and "此任务由本网格的社区工作人员办理" in html  # not the member's task

    community = client.application.test_client()
    sign_in(community, "community")
    assert references(page(community, "/work/claimable")) == [reference]


def test_invalid_input_is_shown_per_field_with_422_and_changes_nothing(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    item = item_id(client, world, reference, "register")
    sign_in(client, "member")
    before = event_kinds(client, world, reference)
    response = complete_from_page(client, reference, item, {"category": "garbage", "description": "短", "verified": "maybe"})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert "请检查下方标出的填写项" in html
    assert re.search(r'id="err-description">至少填写 5 个字。', html)
    assert re.search(r'id="err-location">此项为必填项。', html)
    assert re.search(r'id="err-verified">请选择是或否。', html)
    assert '<textarea id="t%d-description" name="description" rows="4" required aria-invalid="true"' % item in html
    assert '<option value="garbage" selected>' in html  # what was entered stays
    assert event_kinds(client, world, reference) == before
    assert open_tasks(client, world, reference) == ["register"]


def test_a_task_completed_or_claimed_by_someone_else_first_is_a_clear_409(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, SELF_PATH[:4])
    item = item_id(client, world, reference, "close")
    sign_in(client, "chief")
    token = csrf_token(page(client, f"/cases/{reference}"))
    close = {"csrf_token": token, "summary": "办结", "satisfaction": "satisfied"}

    assert call(client, world, "POST", f"/api/work-items/{item}/claim", "chief2").status_code == 200
    claimed = client.post(f"/cases/{reference}/items/{item}/complete", data=close)
    assert claimed.status_code == 409 and "该任务已被他人先行认领" in claimed.get_data(as_text=True)

    assert call(client, world, "POST", f"/api/work-items/{item}/complete", "chief2",
                json={"data": {"summary": "办结", "satisfaction": "satisfied"}}).status_code == 200
    done = client.post(f"/cases/{reference}/items/{item}/complete", data=close)
    assert done.status_code == 409
    html = done.get_data(as_text=True)
    assert "已被办理或已关闭" in html and "已办结" in html
    assert event_kinds(client, world, reference).count("task_completed") == 5


def test_case_text_and_form_text_with_markup_are_escaped(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world, title=f"标题{SCRIPT}")["reference"]
    walk(client, world, reference, [("register", "member", {**REGISTER, "description": f"描述{SCRIPT}描述",
                                                             "location": f"<b>3栋</b>{SCRIPT}"})])
    sign_in(client, "community")
    html = page(client, f"/cases/{reference}")
    assert SCRIPT not in html and "<b>3栋</b>" not in html
    assert f"标题{ESCAPED}" in html and f"描述{ESCAPED}描述" in html
    assert f"&lt;b&gt;3栋&lt;/b&gt;{ESCAPED}" in html  # in the data, history and the review task's instructions
    instructions = re.search(r'<div class="instructions">.*?</div>', html, re.S).group(0)
    assert ESCAPED in instructions and "<br>" in instructions  # line breaks kept, markup not


def test_case_pages_of_another_community_are_not_found(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    sign_in(client, "member2")
    html = page(client, f"/cases/{reference}", 404)
    main = re.search(r"<main>.*</main>", html, re.S).group(0)
    assert "未找到" in main and reference not in main
    assert client.get(f"/cases/{reference}/diagram").status_code == 404
    assert client.get("/cases/SJ-2026-999999").status_code == 404
    supervisor = client.application.test_client()
    sign_in(supervisor, "supervisor")  # street-wide scope
    page(supervisor, f"/cases/{reference}")


# -- uploads -------------------------------------------------------------------------
def test_an_upload_that_is_not_an_image_is_refused_in_place(client, with_passwords):
    world = with_passwords
    reference, item = _at_handle(client, world)
    sign_in(client, "community")
    before = event_kinds(client, world, reference)
    fake = (io.BytesIO(b"<html><script>alert(1)</script></html>"), "photo.jpg", "image/jpeg")
    response = complete_from_page(client, reference, item, HANDLE, {"photo_ref": fake})
    assert response.status_code == 422
    html = response.get_data(as_text=True)
    assert re.search(r'id="err-photo_ref">仅可上传 JPEG、PNG、WebP 格式的照片或 PDF 文件。', html)
    assert "请重新选择文件" in html
    assert event_kinds(client, world, reference) == before
    assert open_tasks(client, world, reference) == ["community_handle"]
    assert "暂无附件" in html


def test_a_png_upload_becomes_an_attachment_with_a_jpeg_thumbnail(client, with_passwords):
    world = with_passwords
    reference, item = _at_handle(client, world)
    sign_in(client, "community")
    photo = png_bytes()
    response = complete_from_page(client, reference, item, HANDLE, {"photo_ref": (io.BytesIO(photo), "现场照片.png", "image/png")})
    assert response.status_code == 303, response.get_data(as_text=True)
    kinds = event_kinds(client, world, reference)
    assert kinds[-2:] == ["attachment_added", "task_completed"]
    added, completed = events(client, world, reference)[-2:]
    attachment = added["payload"]["attachment"]
    assert completed["payload"]["data"] == {**HANDLE, "photo_ref": f"attachment:{attachment}"}
    assert open_tasks(client, world, reference) == ["reinspect"]

    html = page(client, f"/cases/{reference}")
    thumb_url = f"/cases/{reference}/attachments/{attachment}/thumb"
    assert thumb_url in html and f'href="/cases/{reference}/attachments/{attachment}"' in html
    assert "现场照片.png" in html
    thumb = client.get(thumb_url)
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert thumb.headers["X-Content-Type-Options"] == "nosniff"
    assert thumb.headers["Content-Disposition"].startswith("inline")
    assert Image.open(io.BytesIO(thumb.data)).format == "JPEG"
    full = client.get(f"/cases/{reference}/attachments/{attachment}")
    assert full.status_code == 200 and full.mimetype == "image/png" and full.data == photo
    assert full.headers["X-Content-Type-Options"] == "nosniff"
    assert "filename" in full.headers["Content-Disposition"] and "private" in full.headers["Cache-Control"]
    # Not through another case, not for another community.
    other = start_case(client, world)["reference"]
    assert client.get(f"/cases/{other}/attachments/{attachment}").status_code == 404
    outsider = client.application.test_client()
    sign_in(outsider, "member2")
    assert outsider.get(f"/cases/{reference}/attachments/{attachment}").status_code == 404


# -- data, notes, diagram ----------------------------------------------------------------
def test_phones_in_case_data_are_masked_unless_the_role_needs_them(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world, data={"contact_phone": "13812345678"})["reference"]
    sign_in(client, "chief")  # a duty chief does not call residents back
    html = page(client, f"/cases/{reference}")
    assert "138****5678" in html and "13812345678" not in html
    member = client.application.test_client()
    sign_in(member, "member")  # grid members do
    assert "13812345678" in page(member, f"/cases/{reference}")


def test_internal_notes_are_added_escaped_and_recorded(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    sign_in(client, "community")
    token = csrf_token(page(client, f"/cases/{reference}"))
    empty = client.post(f"/cases/{reference}/notes", data={"csrf_token": token, "text": "  "})
    assert empty.status_code == 422 and "备注内容不能为空" in empty.get_data(as_text=True)
    assert event_kinds(client, world, reference) == ["case_started"]

    added = client.post(f"/cases/{reference}/notes", data={"csrf_token": token, "text": f"已电话联系居民\n<b>明早</b>{SCRIPT}"})
    assert added.status_code == 303 and added.headers["Location"].endswith("#notes")
    note = events(client, world, reference)[-1]
    assert note["kind"] == "note_added" and note["actor"] == "community"
    assert note["payload"]["text"] == f"已电话联系居民\n<b>明早</b>{SCRIPT}" and len(note["payload"]["sha256"]) == 64
    html = page(client, f"/cases/{reference}")
    assert f"已电话联系居民<br>\n&lt;b&gt;明早&lt;/b&gt;{ESCAPED}" in html and SCRIPT not in html
    assert "备注已添加" in html and "备注" in html


def test_the_diagram_endpoint_returns_the_xml_and_the_markers(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, [SELF_PATH[0], ("review", "community", REVIEW_SELF)])
    sign_in(client, "member")
    response = client.get(f"/cases/{reference}/diagram", headers={"Accept": "application/json"})
    assert response.status_code == 200 and response.mimetype == "application/json"
    body = response.get_json()
    assert body["xml"].startswith("<?xml") and '<bpmn:process id="grid_quick"' in body["xml"]
    assert body["process_id"] == "grid_quick" and body["version"] == 1
    completed = {entry["id"]: entry["count"] for entry in body["completed"]}
    assert completed == {"start_reported": 1, "register": 1, "review": 1, "gw_decision": 1}
    assert body["current"] == ["community_handle"]
    assert body["waiting"] == ["timer_warning"]
    html = page(client, f"/cases/{reference}")
    steps = re.search(r'<ol class="steps">.*?</ol>', html, re.S).group(0)
    assert "已完成" in steps and "当前" in steps and "等待" in steps and "临期预警" in steps


def test_supervisor_reassigns_from_the_case_page(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, SELF_PATH[:4])
    item = item_id(client, world, reference, "close")
    assert call(client, world, "POST", f"/api/work-items/{item}/claim", "chief").status_code == 200
    sign_in(client, "supervisor")
    html = page(client, f"/cases/{reference}")
    assert "改派或退回" in html and 'value="chief2"' in html
    token = csrf_token(html)
    refused = client.post(f"/work/items/{item}/reassign",
                          data={"csrf_token": token, "origin": "case", "reference": reference, "assignee": "chief2"})
    assert refused.status_code == 422
    refused_html = refused.get_data(as_text=True)
    assert "请填写原因" in refused_html and 'id="task-%d"' % item in refused_html
    done = client.post(f"/work/items/{item}/reassign",
                       data={"csrf_token": token, "origin": "case", "reference": reference, "assignee": "chief2",
                             "reason": "原办理人请假"})
    assert done.status_code == 303 and done.headers["Location"].endswith(f"/cases/{reference}")
    html = page(client, f"/cases/{reference}")
    assert "改派" in html and "原办理人请假" in html and "督办" in html  # history: kind, reason, role label
    assert events(client, world, reference)[-1]["kind"] == "task_reassigned"


def test_the_case_page_in_english(client, with_passwords):
    world = with_passwords
    reference = start_case(client, world)["reference"]
    sign_in(client, "member")
    html = page(client, f"/cases/{reference}")
    client.post("/language", data={"language": "en", "next": f"/cases/{reference}", "csrf_token": csrf_token(html)})
    english = page(client, f"/cases/{reference}")
    for label in ("Current tasks", "Case data", "History", "Internal notes", "Process diagram",
                  "Category", "Description", "Verified on site", "Grid member", "Case started", "Submit"):
        assert label in english, label
    assert "事件类别</label>" not in english  # instructions stay as the process owner wrote them
