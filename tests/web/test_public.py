"""Public pages (no login): a resident reports a problem, gets a tracking code, follows the
case by that code and confirms the result when the process asks for it."""
from __future__ import annotations

import io
import re

import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.conftest import REDIS_TEST_URL, service_missing
from tests.integration.helpers import call, complete, open_item
from tests.web.conftest import csrf_token

ALPHABET = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
CODE = re.compile(r'data-code="([^"]+)"')


def png_bytes(size=(640, 480), color=(30, 120, 200)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, format="PNG")
    return out.getvalue()


def form_data(**overrides) -> dict:
    data = {
        "category": "环境卫生",
        "description": "小区东门垃圾堆放三天无人清理，气味很大。",
        "location": "5 号楼东门",
        "grid": "S-C1-G1",
        "urgency": "normal",
        "contact_phone": "13912347777",
        "consent": "y",
    }
    data.update(overrides)
    return {key: value for key, value in data.items() if value is not None}


def submit(client, *, photos=(), csrf=True, **overrides):
    page = client.get("/public")
    assert page.status_code == 200
    data = form_data(**overrides)
    if csrf:
        data["csrf_token"] = csrf_token(page.get_data(as_text=True))
    if photos:
        data["photos"] = [(io.BytesIO(content), name) for content, name in photos]
    return client.post("/public", data=data, content_type="multipart/form-data")


def submit_ok(client, **overrides) -> str:
    response = submit(client, **overrides)
    assert response.status_code == 303, response.get_data(as_text=True)
    assert response.headers["Location"].endswith("/public/submitted")
    page = client.get("/public/submitted")
    assert page.status_code == 200
    (code,) = CODE.findall(page.get_data(as_text=True))
    return code


def counts(app) -> tuple[int, int, int]:
    from app.cases.models import Attachment, Case, CaseEvent
    from app.db import db

    with app.app_context():
        result = tuple(db.session.scalar(select(func.count()).select_from(model)) for model in (Case, Attachment, CaseEvent))
        db.session.remove()
    return result


def case_facts(app, code: str) -> dict:
    from app.cases.models import Attachment, Case, CaseEvent
    from app.db import db
    from app.work.models import OPEN_STATES, WorkItem

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.tracking_code == code))
        facts = {
            "reference": case.reference,
            "process": case.process_version.process_id,
            "grid": case.grid_node.code,
            "status": case.status,
            "end_event": case.end_event,
            "data": dict(case.data),
            "created_by": case.created_by_id,
            "attachments": [(a.id, a.public, a.content_type) for a in db.session.scalars(select(Attachment).where(Attachment.case_id == case.id))],
            "events": [(e.kind, e.actor, e.actor_id, e.role, (e.payload or {}).get("task"))
                       for e in db.session.scalars(select(CaseEvent).where(CaseEvent.case_id == case.id).order_by(CaseEvent.seq))],
            "open": sorted(i.spec_id for i in db.session.scalars(
                select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.state.in_(OPEN_STATES)))),
        }
        db.session.remove()
    return facts


def text_of(html: str) -> str:
    """What a reader sees: the page without tags, scripts and attribute values."""
    return re.sub(r"<[^>]+>", " ", html)


def drive(client, world, reference: str, path) -> None:
    for task, user, data in path:
        response = complete(client, world, reference, task, user, data)
        assert response.status_code == 200, (task, response.get_json())


TO_RESIDENT_CONFIRM = [
    ("grid_report", "member", {"intake": "accept", "register_note": "现场核实属实，已拍照登记。"}),
    ("community_assign", "community", {"assign_decision": "dispatch", "department": "街道城管办",
                                       "assign_opinion": "涉及占道堆放，需城管执法处理。"}),
    ("department_take", "department", {"take_decision": "take", "take_note": "已接单，安排执法中队处理。"}),
    ("department_resolve", "department", {"result": "城管中队已清理占道堆放物并约谈责任商户。",
                                          "result_photo": "photo://appeal/resolve-2.jpg"}),
    ("grid_confirm", "member", {"resolved_on_site": True, "confirm_photo": "photo://appeal/site.jpg"}),
]


def confirm_post(client, code: str, **data):
    page = client.get(f"/public/track/{code}")
    return client.post(f"/public/track/{code}", data={"csrf_token": csrf_token(page.get_data(as_text=True)), **data})


# -- the form ---------------------------------------------------------------------
def test_anonymous_visitors_land_on_the_chinese_report_form(client):
    home = client.get("/")
    assert home.status_code == 302 and home.headers["Location"].endswith("/public")
    page = client.get("/public")
    html = page.get_data(as_text=True)
    assert page.status_code == 200
    assert '<html lang="zh-CN">' in html and 'name="viewport"' in html and "css/public.css" in html
    assert "我要反映" in html and "查询进度" in html           # public navigation items
    assert '<optgroup label="C1社区">' in html and '<option value="S-C1-G1"' in html
    assert '<option value="S-C1"' not in html and '<option value="S"' not in html  # grids only
    assert '<option value="环境卫生"' in html                 # categories from categories.json
    assert 'name="csrf_token"' in html and 'enctype="multipart/form-data"' in html
    assert 'type="tel"' in html and 'name="consent"' in html


def test_the_form_speaks_english_on_request(client):
    page = client.get("/public").get_data(as_text=True)
    client.post("/language", data={"language": "en", "next": "/public", "csrf_token": csrf_token(page)})
    english = client.get("/public").get_data(as_text=True)
    assert "Report a problem" in english and "Sanitation and litter" in english and "What is the problem?" in english
    code = submit_ok(client)
    track = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert "Submitted, waiting to be accepted" in track and "Your demand was submitted" in track


# -- submitting -------------------------------------------------------------------
def test_a_submission_starts_an_appeal_with_a_tracking_code_and_public_photos(app, client):
    before = counts(app)
    response = submit(client, photos=[(png_bytes(), "门口.png")])
    assert response.status_code == 303
    page = client.get("/public/submitted")
    html = page.get_data(as_text=True)
    (code,) = CODE.findall(html)
    assert len(code) == 10 and set(code) <= set(ALPHABET)
    assert f"http://localhost/public/track/{code}" in html and "请截图或抄写保存此查询码" in html
    assert page.headers["Cache-Control"] == "no-store"

    facts = case_facts(app, code)
    assert facts["process"] == "appeal_loop" and facts["grid"] == "S-C1-G1" and facts["created_by"] is None
    assert facts["reference"].startswith("SQ-") and facts["reference"] in html
    assert {k: facts["data"][k] for k in ("source", "category", "location", "urgency", "contact_phone", "is_repeat")} == {
        "source": "resident", "category": "环境卫生", "location": "5 号楼东门", "urgency": "normal",
        "contact_phone": "13912347777", "is_repeat": False,
    }
    assert [(public, kind) for _id, public, kind in facts["attachments"]] == [(True, "image/png")]
    assert facts["open"] == ["grid_report"]
    assert counts(app)[:2] == (before[0] + 1, before[1] + 1)

    track = client.get(f"/public/track/{code}")
    assert track.status_code == 200
    text = track.get_data(as_text=True)
    assert 'data-stage="submitted"' in text and "已提交，待受理" in text
    assert "环境卫生" in text and "小区东门垃圾堆放三天无人清理" in text and "诉求已提交" in text
    assert track.headers["Cache-Control"] == "no-store" and track.headers["Referrer-Policy"] == "no-referrer"
    (attachment_id, _public, _kind) = facts["attachments"][0]
    thumb = client.get(f"/public/track/{code}/photos/{attachment_id}/thumb")
    assert thumb.status_code == 200 and thumb.mimetype == "image/jpeg"
    assert thumb.headers["X-Content-Type-Options"] == "nosniff"
    full = client.get(f"/public/track/{code}/photos/{attachment_id}")
    assert full.status_code == 200 and full.mimetype == "image/png" and full.data == png_bytes()
    assert f"/public/track/{code}/photos/{attachment_id}/thumb" in text


def test_the_phone_is_masked_on_the_tracking_page(client):
    code = submit_ok(client, contact_phone="+86 139 1234 7777")
    html = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert "139********" in html
    for leak in ("13912347777", "1234", "****7777", "139****7777"):
        assert leak not in text_of(html).replace(code, "")
    # the last four digits are the resident's key to the confirmation: not shown anywhere
    assert "7777" not in text_of(html).replace(code, "")


def test_a_repeat_demand_at_the_same_place_is_flagged(app, client):
    first = submit_ok(client)
    second = submit_ok(client, description="东门垃圾又堆起来了，还是没人管。")
    elsewhere = submit_ok(client, location="3 号楼北侧")
    assert case_facts(app, first)["data"]["is_repeat"] is False
    assert case_facts(app, second)["data"]["is_repeat"] is True
    assert case_facts(app, elsewhere)["data"]["is_repeat"] is False


@pytest.mark.parametrize(
    "overrides, photos, status, message",
    [
        ({"description": None}, (), 422, "请描述您反映的问题"),
        ({"description": "   "}, (), 422, "请描述您反映的问题"),
        ({"description": "太脏"}, (), 422, "问题描述请在 5 到 2000 个字之间"),
        ({"description": "长" * 2001}, (), 422, "问题描述请在 5 到 2000 个字之间"),
        ({"contact_phone": "12345"}, (), 422, "请填写 11 位手机号码"),
        ({"contact_phone": "1391234777a"}, (), 422, "请填写 11 位手机号码"),
        ({"consent": None}, (), 422, "请勾选同意回访"),
        ({"grid": "S-C1"}, (), 422, "请选择您所在的网格"),
        ({"grid": "NOPE"}, (), 422, "请选择您所在的网格"),
        ({"grid": None}, (), 422, "请选择您所在的网格"),
        ({"category": "随便写的"}, (), 422, "请选择诉求类别"),
        ({"urgency": "panic"}, (), 422, "请选择“一般”或“紧急”"),
        ({}, [(b"<html><script>alert(1)</script></html>", "photo.jpg")], 422, "不是 JPEG、PNG、WebP 照片或 PDF 文档"),
        ({}, [(png_bytes()[:300], "truncated.png")], 422, "不是 JPEG、PNG、WebP 照片或 PDF 文档"),
        ({}, [(png_bytes(), f"{n}.png") for n in range(4)], 422, "最多上传 3 张照片"),
    ],
)
def test_invalid_input_is_said_in_place_and_creates_nothing(app, client, overrides, photos, status, message):
    before = counts(app)
    response = submit(client, photos=photos, **overrides)
    html = response.get_data(as_text=True)
    assert response.status_code == status, html
    assert message in html and "请检查填写内容" in html
    assert 'class="field-error"' in html
    assert counts(app) == before  # no case, no attachment, no event
    if overrides.get("description") is None and "description" not in overrides:
        assert "小区东门垃圾堆放三天无人清理" in html  # what the resident typed is kept


def test_an_oversized_photo_is_refused_and_creates_nothing(app, client, monkeypatch):
    # A small limit keeps the upload in memory (the test client spools bodies over 500 KB to
    # a temporary file that it never closes).
    monkeypatch.setitem(app.config, "ATTACHMENT_MAX_BYTES", 256 * 1024)
    big = png_bytes(size=(400, 400)) + b"\x00" * (300 * 1024)
    before = counts(app)
    page = client.get("/public").get_data(as_text=True)
    assert "每个不超过 256 KB" in page
    response = submit(client, photos=[(big, "大图.png")])
    html = response.get_data(as_text=True)
    assert response.status_code == 422
    assert "大图.png 超过 256 KB" in html
    assert counts(app) == before


def test_a_submission_without_its_csrf_token_is_shown_again_and_creates_nothing(app, client):
    before = counts(app)
    response = submit(client, csrf=False)
    html = response.get_data(as_text=True)
    assert response.status_code == 400
    assert "表单已过期或来源无效" in html and "小区东门垃圾堆放三天无人清理" in html
    assert counts(app) == before


def test_script_in_the_description_is_shown_escaped(client):
    code = submit_ok(client, description="<script>alert(1)</script> 楼道灯坏了", location="<b>3栋</b>")
    html = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 楼道灯坏了" in html and "<script>alert(1)" not in html
    assert "&lt;b&gt;3栋&lt;/b&gt;" in html and "<b>3栋" not in html
    again = submit(client, description="<script>alert(2)</script>", contact_phone="bad").get_data(as_text=True)
    assert "&lt;script&gt;alert(2)&lt;/script&gt;" in again and "<script>alert(2)" not in again


# -- tracking -----------------------------------------------------------------------
def test_a_tracking_code_shows_only_its_own_case(app, client):
    mine = submit_ok(client, description="我家楼下的路灯不亮了，晚上很黑。", contact_phone="13700001111",
                     photos=[(png_bytes(color=(1, 2, 3)), "a.png")])
    theirs = submit_ok(client, category="噪音扰民", description="隔壁工地夜间施工噪音扰民。", grid="S-C2-G1",
                       location="幸福路 8 号", contact_phone="010-87654321", photos=[(png_bytes(color=(9, 9, 9)), "b.png")])
    mine_facts, their_facts = case_facts(app, mine), case_facts(app, theirs)
    html = client.get(f"/public/track/{mine}").get_data(as_text=True)
    assert "我家楼下的路灯不亮了" in html and mine_facts["reference"] in html
    for leak in (theirs, their_facts["reference"], "隔壁工地夜间施工", "噪音扰民", "幸福路 8 号", "87654321", "C2一网格"):
        assert leak not in html
    their_photo = their_facts["attachments"][0][0]
    assert f"/photos/{their_photo}" not in html
    # another case's photo is not reachable through my code
    assert client.get(f"/public/track/{mine}/photos/{their_photo}").status_code == 404
    assert client.get(f"/public/track/{mine}/photos/{their_photo}/thumb").status_code == 404
    assert client.get(f"/public/track/{theirs}/photos/{their_photo}/thumb").status_code == 200


def test_a_non_public_attachment_is_not_served(app, client):
    from app.cases import attachments
    from app.cases import service as cases
    from app.db import commit, db

    code = submit_ok(client)
    reference = case_facts(app, code)["reference"]
    with app.app_context():
        internal = attachments.add(cases.lock_case(cases.get_case(reference).id), png_bytes(), "内部.png", uploaded_by=None)
        commit()
        internal_id = internal.id
        db.session.remove()
    assert client.get(f"/public/track/{code}/photos/{internal_id}").status_code == 404
    assert f"/photos/{internal_id}" not in client.get(f"/public/track/{code}").get_data(as_text=True)


def _without_tokens(html: str) -> str:
    """The page minus what depends on the URL asked for, which the caller knows anyway: the
    CSRF token, the language switch's return address and the highlighted navigation entry."""
    html = re.sub(r'name="csrf_token" value="[^"]*"', "", html)
    html = re.sub(r'name="next" value="[^"]*"', "", html)
    return html.replace('class="active"', 'class=""')


def test_unknown_and_malformed_codes_get_the_same_not_found_page(client):
    code = submit_ok(client)
    unknown = "".join(reversed(code)) if "".join(reversed(code)) != code else "23456789AB"
    answers = [client.get(f"/public/track/{value}") for value in (unknown, "abc", "0000000000", "x" * 300, code + "2")]
    answers.append(client.get(f"/public/track?code={unknown}"))
    answers.append(client.get("/public/track?code=%3Cscript%3E"))
    bodies = {_without_tokens(a.get_data(as_text=True)) for a in answers}
    assert [a.status_code for a in answers] == [404] * len(answers)
    assert len(bodies) == 1
    body = bodies.pop()
    assert "未找到与该查询码对应的诉求" in body and 'name="code"' in body
    assert client.get(f"/public/track/{unknown}/photos/1").status_code == 404


def test_the_lookup_form_accepts_the_code_as_people_type_it(client):
    code = submit_ok(client)
    assert client.get("/public/track").status_code == 200
    typed = f" {code[:5].lower()} - {code[5:].lower()} "
    response = client.get("/public/track", query_string={"code": typed})
    assert response.status_code == 303 and response.headers["Location"].endswith(f"/public/track/{code}")
    lower = client.get(f"/public/track/{code.lower()}")
    assert lower.status_code == 303 and lower.headers["Location"].endswith(f"/public/track/{code}")


# -- the resident's confirmation --------------------------------------------------------
def test_the_resident_confirms_the_result_on_the_tracking_page(app, client, world):
    code = submit_ok(client)
    reference = case_facts(app, code)["reference"]
    page = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert 'action="/public/track/' not in page  # nothing to confirm yet

    drive(client, world, reference, TO_RESIDENT_CONFIRM)
    page = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert 'data-stage="awaiting_you"' in page and "待您确认" in page and "请确认办理结果" in page
    assert 'name="satisfaction" value="satisfied"' in page and "基本满意" in page and 'name="resident_comment"' in page
    assert 'name="phone_digits"' in page
    # the timeline names roles, never people, and shows no handler's free text
    for line in ("诉求已提交", "网格员已核实并受理", "社区已派单至街道职能部门", "街道职能部门已接单",
                 "街道职能部门已处置完毕", "网格员现场确认问题已解决"):
        assert line in page
    for leak in ("现场核实属实", "街道城管办", "城管中队", "已接单，安排执法中队处理", "涉及占道堆放"):
        assert leak not in page
    visible = text_of(page)
    for name in ("member", "community", "department", "supervisor", "admin"):
        assert name not in visible

    events_before = counts(app)[2]
    wrong = confirm_post(client, code, satisfaction="satisfied", phone_digits="1234")
    assert wrong.status_code == 403
    assert "电话后 4 位与您所留电话不符" in wrong.get_data(as_text=True)
    missing = confirm_post(client, code, satisfaction="satisfied")
    assert missing.status_code == 403
    invalid = confirm_post(client, code, satisfaction="unsatisfied", phone_digits="7777")
    assert invalid.status_code == 422
    assert "此项为必填项" in invalid.get_data(as_text=True)
    no_csrf = client.post(f"/public/track/{code}", data={"satisfaction": "satisfied", "phone_digits": "7777"})
    assert no_csrf.status_code == 400
    assert counts(app)[2] == events_before
    assert case_facts(app, code)["open"] == ["resident_confirm"]

    right = confirm_post(client, code, satisfaction="basically_satisfied", resident_comment="希望保持。", phone_digits="7777")
    assert right.status_code == 303
    after = client.get(right.headers["Location"]).get_data(as_text=True)
    assert "感谢您的评价" in after and "您已确认评价：基本满意" in after
    assert 'data-stage="finishing"' in after and 'name="phone_digits"' not in after
    facts = case_facts(app, code)
    assert facts["open"] == ["publish_feedback"]
    assert facts["data"]["satisfaction"] == "basically_satisfied"
    kind, actor, actor_id, role, task = facts["events"][-1]
    assert (kind, actor, actor_id, role, task) == ("task_completed", "resident", None, "resident", "resident_confirm")

    again = confirm_post(client, code, satisfaction="satisfied", phone_digits="7777")
    assert again.status_code == 409
    assert "该诉求已确认过" in again.get_data(as_text=True)
    assert len(case_facts(app, code)["events"]) == len(facts["events"])

    drive(client, world, reference, [
        ("publish_feedback", "community", {"feedback_text": "东门垃圾已清理，物业每日清运两次。<i>谢谢</i>", "resident_notified": True}),
        ("supervisor_close", "supervisor", {"close_decision": "close", "close_note": "核查属实，同意销单。"}),
    ])
    done = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert 'data-stage="closed"' in done and "已办结" in done
    assert "东门垃圾已清理，物业每日清运两次。&lt;i&gt;谢谢&lt;/i&gt;" in done
    assert "处理结果已公开反馈" in done and "督办已审核销单" in done and "核查属实" not in done


def test_without_a_phone_the_tracking_code_alone_confirms(app, client, world):
    code = submit_ok(client, contact_phone="", consent=None)
    facts = case_facts(app, code)
    assert facts["data"]["contact_phone"] == ""
    drive(client, world, facts["reference"], [
        ("grid_report", "member", {"intake": "accept"}),
        ("community_assign", "community", {"assign_decision": "self", "assign_opinion": "社区自行处理。"}),
        ("community_resolve", "community", {"result": "已清理。", "result_photo": "photo://x.jpg"}),
        ("grid_confirm", "member", {"resolved_on_site": True}),
    ])
    page = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert "请确认办理结果" in page and 'name="phone_digits"' not in page and "回访电话" not in text_of(page)
    assert confirm_post(client, code, satisfaction="satisfied").status_code == 303
    assert case_facts(app, code)["events"][-1][1:4] == ("resident", None, "resident")


def test_a_rejected_demand_reads_not_accepted(app, client, world):
    code = submit_ok(client)
    drive(client, world, case_facts(app, code)["reference"],
          [("grid_report", "member", {"intake": "reject", "reject_reason": "不属于本网格管辖范围，张三已电话说明。"})])
    page = client.get(f"/public/track/{code}").get_data(as_text=True)
    assert 'data-stage="rejected"' in page and "不予受理" in page and "张三" not in page


def test_handlers_cannot_be_impersonated_through_the_public_service(app, client, world):
    """apply_completion without an actor completes resident tasks only."""
    from app.cases import service as cases
    from app.db import db
    from app.errors import PermissionDenied
    from app.runtime import runtime
    from app.timeutil import utcnow
    from app.work.models import WorkItem

    code = submit_ok(client)
    reference = case_facts(app, code)["reference"]
    item_id = open_item(client, world, reference, "grid_report")["id"]
    with app.app_context():
        case = cases.lock_case(cases.get_case(reference).id)
        item = db.session.get(WorkItem, item_id)
        with pytest.raises(PermissionDenied):
            cases.apply_completion(runtime(), case, item, {"intake": "accept"}, actor=None, at=utcnow())
        db.session.rollback()
        db.session.remove()


# -- what anonymous visitors cannot reach --------------------------------------------------
def _sample_url(rule) -> str:
    values = {}
    for name in rule.arguments:
        converter = rule._converters[name].__class__.__name__
        values[name] = 1 if converter in ("IntegerConverter", "NumberConverter") else "SQ-2026-000001"
    return rule.build(values)[1]


def test_anonymous_visitors_are_sent_to_sign_in_for_workspace_pages_and_get_401_from_the_api(app, client):
    checked = 0
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith(("/work", "/cases")) or "GET" not in rule.methods:
            continue
        response = client.get(_sample_url(rule))
        assert response.status_code == 302, rule.rule
        assert "/login" in response.headers["Location"], rule.rule
        checked += 1
    for rule in app.url_map.iter_rules():
        if rule.rule.startswith(("/work", "/cases")) and "POST" in rule.methods:
            assert client.post(_sample_url(rule)).status_code in (302, 400), rule.rule  # login or CSRF first
    api = client.get("/api/cases/SQ-2026-000001")
    assert api.status_code == 401 and api.is_json and api.get_json()["error"]["code"] == "not_authenticated"
    assert client.get("/api/work-items").status_code == 401
    assert call(client, None, "GET", "/api/processes", user=None).status_code == 401


# -- light rate limits (Redis) ---------------------------------------------------------------
@pytest.fixture
def redis_limits(app, monkeypatch):
    from redis import Redis
    from redis.exceptions import RedisError

    connection = Redis.from_url(REDIS_TEST_URL)
    try:
        connection.ping()
    except RedisError as exc:
        service_missing("Redis", str(exc))  # fails under CI=true, skips loudly elsewhere

    def clear():
        for key in connection.scan_iter("gridcase:public-limit:*"):
            connection.delete(key)

    def enable(limits):
        # Only once the test has set its case up: timers would otherwise be scheduled on Redis.
        from app.public import service

        monkeypatch.setattr(service, "_clock", lambda: 1_800_000_000.0)  # one window throughout
        monkeypatch.setitem(app.config, "REDIS_URL", REDIS_TEST_URL)
        monkeypatch.setitem(app.config, "PUBLIC_RATE_LIMITS", limits)

    clear()
    yield enable
    clear()
    connection.close()


def test_lookups_are_rate_limited_per_address_across_processes(app, client, redis_limits):
    code = submit_ok(client)
    redis_limits({"lookup": (4, 600)})
    assert [client.get(f"/public/track/{code}").status_code for _ in range(3)] == [200, 200, 200]
    assert client.get("/public/track/23456789AB").status_code == 404
    limited = client.get(f"/public/track/{code}")
    assert limited.status_code == 429 and "请求过于频繁" in limited.get_data(as_text=True)
    assert limited.headers["Retry-After"] == "600"
    assert client.get("/public/track/23456789AB").status_code == 429
    # another address is not affected
    assert client.get(f"/public/track/{code}", environ_base={"REMOTE_ADDR": "10.1.2.3"}).status_code == 200


def test_wrong_phone_digits_are_limited_per_tracking_code(app, client, world, redis_limits):
    code = submit_ok(client)
    drive(client, world, case_facts(app, code)["reference"], TO_RESIDENT_CONFIRM)
    redis_limits({"confirm_failed": (2, 3600)})
    assert confirm_post(client, code, satisfaction="satisfied", phone_digits="0000").status_code == 403
    assert confirm_post(client, code, satisfaction="satisfied", phone_digits="0001").status_code == 403
    blocked = confirm_post(client, code, satisfaction="satisfied", phone_digits="7777")
    assert blocked.status_code == 429 and "错误次数过多" in blocked.get_data(as_text=True)
    assert case_facts(app, code)["open"] == ["resident_confirm"]
