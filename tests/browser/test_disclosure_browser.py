"""The public disclosure board in the browser: a resident on a phone finds a disclosed
resolution from the public home page, reads its votes and posting window, and objects; the
two committees, signed in, find the objection in their work list and in the case history."""
from __future__ import annotations

import pytest

from tests.browser.conftest import assert_chinese_glyphs, login, shot
from tests.web.test_disclosure import TOPIC, deliberation  # noqa: F401  (fixture)

pytestmark = pytest.mark.browser

OBJECTION = "充电棚紧挨消防通道，建议改到北侧空地，请两委会复核选址。"


def test_a_resident_objects_on_the_board_and_the_process_receives_it(app, live_server, with_passwords, deliberation,
                                                                      phone_page, page):
    disclosure_id, reference = deliberation(days_ago=1)

    # The resident opens the public home page on a phone and follows the link to the board.
    phone_page.goto("/public")
    with phone_page.expect_navigation():
        phone_page.locator("main").get_by_role("link", name="公开栏").click()
    assert phone_page.url.endswith("/disclosure")
    card = phone_page.locator(f"article[data-resolution='{disclosure_id}']")
    assert card.is_visible() and TOPIC in card.inner_text()
    assert "赞成" in card.inner_text() and "86" in card.inner_text() and "异议受理至" in card.inner_text()
    shot(phone_page, "01-board-on-phone")
    assert_chinese_glyphs(phone_page, "main h1")
    width = phone_page.evaluate("document.documentElement.scrollWidth")
    assert width <= 390, f"the board is wider than the phone ({width}px)"

    # The resolution's page: text, votes, posting window; the objection form.
    with phone_page.expect_navigation():
        card.get_by_role("link", name=TOPIC).click()
    assert "公开招标施工" in phone_page.locator(".dc-text").inner_text()
    assert phone_page.locator(".dc-window-end").inner_text().strip()
    shot(phone_page, "02-resolution")
    phone_page.get_by_label("异议内容").fill("太短")
    with phone_page.expect_navigation():
        phone_page.get_by_role("button", name="提交异议").click()
    assert "10 至 1000 字" in phone_page.locator("#content-error").inner_text()
    shot(phone_page, "03-objection-too-short")
    phone_page.get_by_label("异议内容").fill(OBJECTION)
    with phone_page.expect_navigation():
        phone_page.get_by_role("button", name="提交异议").click()
    assert "您的异议已收到" in phone_page.locator(".flash").inner_text()
    assert "正在复核" in phone_page.locator(".dc-objection").inner_text()  # no second form while it is reviewed
    shot(phone_page, "04-objection-received")

    # The two committees see the review task and the objection in the case history.
    login(page, live_server, "committees")
    page.goto("/work/claimable")
    row = page.locator("tr[data-item]", has=page.locator(f"a.ref:text-is('{reference}')"))
    assert "异议复核" in row.inner_text()
    shot(page, "05-committees-work-list")
    page.goto(f"/cases/{reference}")
    history = page.locator("#history")
    received = history.locator("li.kind-message_received").last
    assert "objection_received" in received.inner_text() and OBJECTION in received.inner_text()
    assert "居民" in received.inner_text()
    shot(page, "06-case-history")
