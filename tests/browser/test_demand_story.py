"""A resident's demand from submission to closure, done in the browser by the people who do it.

The resident reports on the public page (phone) and gets a tracking code; the grid member
signs in, claims and accepts it; the community dispatches it; the department takes it and
resolves it with a photo; the grid member confirms on site; the resident confirms and rates on
the tracking page; the community publishes the feedback; the supervisor closes it; the case
page shows the whole history. A screenshot is saved at every step.
"""
from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.browser.conftest import login, shot

pytestmark = pytest.mark.browser

DESCRIPTION = "小区东门垃圾分类亭周边垃圾堆放多日无人清运，气味很大。"
PHONE = "13812345678"


def _photo(tmp_path) -> str:
    path = tmp_path / "resolved.png"
    Image.new("RGB", (640, 480), (60, 140, 60)).save(path, format="PNG")
    return str(path)


def _reference_of(app, code: str) -> str:
    from sqlalchemy import select

    from app.cases.models import Case
    from app.db import db

    with app.app_context():
        reference = db.session.scalar(select(Case.reference).where(Case.tracking_code == code))
        db.session.remove()
    return reference


def _claim_and_open(page, reference: str, step: str) -> None:
    """From 待认领, claim the case's open task; claiming opens the case page."""
    page.goto("/work/claimable")
    row = page.locator("tr[data-item]", has=page.locator(f"a.ref:text-is('{reference}')"))
    shot(page, f"{step}-claimable")
    with page.expect_navigation():
        row.get_by_role("button", name="认领").click()
    page.wait_for_selector(".task-form")


def _submit_task(page, step: str, fill) -> None:
    form = page.locator("form.task-form").first
    fill(form)
    shot(page, f"{step}-filled")
    with page.expect_navigation():
        form.locator("button[type=submit]").click()
    assert page.locator(".field-error").count() == 0, page.locator(".field-error").all_inner_texts()


def _sign_out(page) -> None:
    with page.expect_navigation():
        page.get_by_role("button", name="退出").click()


def test_a_demand_from_submission_to_closure(app, browser, live_server, with_passwords, tmp_path):
    resident = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": 390, "height": 844},
                                   is_mobile=True, has_touch=True, timezone_id="Asia/Shanghai")
    staff = browser.new_context(base_url=live_server, locale="zh-CN", viewport={"width": 1280, "height": 800},
                                timezone_id="Asia/Shanghai")
    try:
        phone = resident.new_page()
        page = staff.new_page()

        # 1. The resident reports on the public page and gets a tracking code.
        phone.goto("/public")
        phone.locator("#category").select_option(index=1)
        phone.locator("#description").fill(DESCRIPTION)
        phone.locator("#grid").select_option("S-C1-G1")
        phone.locator("#location").fill("一网格3栋东侧")
        phone.locator("#contact_phone").fill(PHONE)
        phone.locator("input[name=consent]").check()
        shot(phone, "01-resident-report")
        with phone.expect_navigation():
            phone.locator("form.pub-form button[type=submit]").click()
        code = phone.locator(".pub-code").get_attribute("data-code")
        assert code and len(code) == 10
        shot(phone, "02-tracking-code")
        reference = _reference_of(app, code)
        assert reference.startswith("SQ-")

        # 2. The grid member signs in, claims and accepts it.
        login(page, live_server, "member")
        _claim_and_open(page, reference, "03-member")
        _submit_task(page, "04-member-accepts", lambda f: (
            f.locator("input[name=intake][value=accept]").check(),
            f.locator("textarea[name=register_note]").fill("现场核实属实，已拍照登记。"),
        ))
        _sign_out(page)

        # 3. The community dispatches it to a department.
        login(page, live_server, "community")
        _claim_and_open(page, reference, "05-community")
        _submit_task(page, "06-community-dispatches", lambda f: (
            f.locator("input[name=assign_decision][value=dispatch]").check(),
            f.locator("input[name=department]").fill("街道城管办"),
            f.locator("textarea[name=assign_opinion]").fill("涉及垃圾清运，派城管办处理。"),
        ))
        _sign_out(page)

        # 4. The department takes it and resolves it with a photo.
        login(page, live_server, "department")
        _claim_and_open(page, reference, "07-department")
        _submit_task(page, "08-department-takes", lambda f: (
            f.locator("input[name=take_decision][value=take]").check(),
            f.locator("textarea[name=take_note]").fill("已接单。"),
        ))
        _claim_and_open(page, reference, "09-department-resolve")
        _submit_task(page, "10-department-resolves", lambda f: (
            f.locator("textarea[name=result]").fill("已协调物业清运垃圾并增加清运频次。"),
            f.locator("input[name=result_photo]").set_input_files(_photo(tmp_path)),
        ))
        assert page.locator("img[src*='/thumb']").count() >= 1  # the photo shows as a thumbnail
        shot(page, "11-photo-on-case")
        _sign_out(page)

        # 5. The grid member confirms on site.
        login(page, live_server, "member")
        _claim_and_open(page, reference, "12-member-confirm")
        _submit_task(page, "13-member-confirms", lambda f: f.locator("input[name=resolved_on_site][value=true]").check())
        _sign_out(page)

        # 6. The resident confirms and rates on the tracking page.
        phone.goto(f"/public/track/{code}")
        shot(phone, "14-resident-asked-to-confirm")
        phone.locator("input[name=satisfaction][value=satisfied]").check()
        phone.locator("#phone_digits").fill(PHONE[-4:])
        with phone.expect_navigation():
            phone.get_by_role("button", name="提交确认").click()
        shot(phone, "15-resident-confirmed")
        assert PHONE not in phone.content()  # never the full number on a public page

        # 7. The community publishes the feedback; 8. the supervisor closes the case.
        login(page, live_server, "community")
        _claim_and_open(page, reference, "16-community-feedback")
        _submit_task(page, "17-feedback-published", lambda f: (
            f.locator("textarea[name=feedback_text]").fill("垃圾分类亭周边堆放问题已清理，物业每日清运两次。"),
            f.locator("input[name=resident_notified][value=true]").check(),
        ))
        _sign_out(page)
        login(page, live_server, "supervisor")
        _claim_and_open(page, reference, "18-supervisor")
        _submit_task(page, "19-supervisor-closes", lambda f: (
            f.locator("input[name=close_decision][value=close]").check(),
            f.locator("textarea[name=close_note]").fill("核查属实，同意销单。"),
        ))

        # The case page shows it closed, with the whole history.
        page.goto(f"/cases/{reference}")
        shot(page, "20-closed-case")
        assert page.locator(".status.closed").count() == 1
        history = page.locator("#history").inner_text()
        for who in ("网格员", "社区工作人员", "街道职能部门", "居民", "督办"):
            assert who in history, who
        phone.goto(f"/public/track/{code}")
        shot(phone, "21-resident-sees-closed")
        assert "已办结" in phone.content()
    finally:
        resident.close()
        staff.close()
