"""The inbox and 延期审批 pages as people use them: the unread badge, marking read, opening
the case; asking for an extension on the case page and deciding it on the approval page,
with refusals shown in place."""
from __future__ import annotations

import re

from tests.integration.helpers import REGISTER, REVIEW_DISPATCH, call, open_item, start_case, walk
from tests.web.conftest import sign_in
from tests.web.test_workspace import badge, page, post, references


def test_inbox_badge_mark_read_and_open(app, client, with_passwords):
    world = with_passwords
    first = start_case(client, world)["reference"]
    second = start_case(client, world, title="路灯不亮")["reference"]
    sign_in(client, "member")

    html = page(client, "/inbox")
    assert badge(html, "/inbox") == 2
    assert first in html and second in html and "路灯不亮" in html
    assert html.count('class="unread') == 2

    # Open one: it is marked read and we land on its case at the task.
    ids = re.findall(r'data-notification="(\d+)"', html)
    response = post(client, f"/inbox/{ids[0]}/open", token_from="/inbox")
    assert response.status_code == 303 and "/cases/" in response.headers["Location"] and "#task-" in response.headers["Location"]
    assert badge(page(client, "/inbox"), "/inbox") == 1

    response = post(client, "/inbox/read", {"all": "1"}, token_from="/inbox")
    assert response.status_code == 303
    html = page(client, "/inbox")
    assert badge(html, "/inbox") is None and 'class="unread' not in html
    assert page(client, "/inbox?unread=1").count("data-notification=") == 0


def test_inbox_in_english(app, client, with_passwords):
    world = with_passwords
    start_case(client, world)
    sign_in(client, "member")
    post(client, "/language", {"language": "en"}, token_from="/inbox")
    html = page(client, "/inbox")
    assert "New work for your role" in html and "Mark all read" in html


def _claimed(client, world):
    reference = start_case(client, world)["reference"]
    walk(client, world, reference, [("register", "member", REGISTER), ("review", "community", REVIEW_DISPATCH)])
    item = open_item(client, world, reference, "department_handle")
    assert call(client, world, "POST", f"/api/work-items/{item['id']}/claim", "department").status_code == 200
    return reference, item


def test_extension_requested_on_the_case_page_and_approved_on_the_approval_page(app, client, with_passwords):
    world = with_passwords
    reference, item = _claimed(client, world)
    sign_in(client, "department")
    html = page(client, f"/cases/{reference}")
    assert f'action="/work/items/{item["id"]}/extension"' in html

    # Refused in place: no reason, nothing recorded.
    response = post(client, f"/work/items/{item['id']}/extension",
                    {"origin": "case", "reference": reference, "working_days": "2"}, token_from=f"/cases/{reference}")
    assert response.status_code == 422
    body = response.get_data(as_text=True)
    assert 'role="alert"' in body and f'id="task-{item["id"]}"' in body
    assert call(client, world, "GET", "/api/work-items/extensions", "supervisor").get_json()["total"] == 0

    response = post(client, f"/work/items/{item['id']}/extension",
                    {"origin": "case", "reference": reference, "working_days": "3", "reason": "需协调产权单位"},
                    token_from=f"/cases/{reference}")
    assert response.status_code == 303
    html = page(client, f"/cases/{reference}")
    assert "需协调产权单位" in html and "ext-pending" in html

    client = app.test_client()  # another person, another browser
    sign_in(client, "supervisor")
    html = page(client, "/work/extensions")
    assert badge(html, "/work/extensions") == 1 and reference in html and "需协调产权单位" in html
    (ext_id,) = re.findall(r'data-extension="(\d+)"', html)

    # Rejecting needs a reason: shown on the row, status 422, nothing changed.
    response = post(client, f"/work/extensions/{ext_id}/decide", {"action": "reject"}, token_from="/work/extensions")
    assert response.status_code == 422 and 'role="alert"' in response.get_data(as_text=True)
    assert call(client, world, "GET", "/api/work-items/extensions", "supervisor").get_json()["total"] == 1

    response = post(client, f"/work/extensions/{ext_id}/decide", {"action": "approve"}, token_from="/work/extensions")
    assert response.status_code == 303
    html = page(client, "/work/extensions")
    assert badge(html, "/work/extensions") is None and 'data-extension=' not in html
    moved = open_item(client, world, reference, "department_handle")
    assert moved["extension_count"] == 1 and moved["due_at"] != item["due_at"]
    assert "ext-approved" in page(client, f"/cases/{reference}")


def test_extension_pages_are_for_approvers_only(app, client, with_passwords):
    world = with_passwords
    _claimed(client, world)
    sign_in(client, "member")
    html = page(client, "/work/mine")
    assert 'href="/work/extensions"' not in html
    assert client.get("/work/extensions").status_code == 403
    token_page = "/work/mine"
    ext = call(client, world, "GET", "/api/work-items/extensions", "supervisor").get_json()
    assert ext["total"] == 0
    response = post(client, "/work/extensions/99999/decide", {"action": "approve"}, token_from=token_page)
    assert response.status_code in (403, 404)


def test_overdue_list_shows_extension_counts_and_filters_by_department(app, client, with_passwords):
    from datetime import timedelta

    from app.db import commit, db
    from app.people import service as people
    from app.timeutil import utcnow
    from app.work.models import WorkItem

    world = with_passwords
    reference, item = _claimed(client, world)
    ext = call(client, world, "POST", f"/api/work-items/{item['id']}/extensions", "department",
               json={"reason": "需协调", "working_days": 1}).get_json()
    call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "supervisor", json={})
    with app.app_context():
        street = people.grid_by_code("S")
        urban = people.add_department("urban_management", "城市管理办公室", "street", street)
        people.add_department("law_enforcement", "综合行政执法队", "street", street)
        row = db.session.get(WorkItem, item["id"])
        row.due_at, row.department_id = utcnow() - timedelta(hours=1), urban.id
        commit()
        db.session.remove()

    sign_in(client, "supervisor")
    html = page(client, "/work/overdue")
    assert reference in html and 'data-extensions="1"' in html
    assert 'name="department"' in html
    assert references(page(client, "/work/overdue?department=urban_management")) == [reference]
    assert references(page(client, "/work/overdue?department=law_enforcement")) == []
