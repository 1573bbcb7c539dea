"""Signing in, in a real browser: Chinese drawn with real glyphs, errors in place, lockout,
the signed-in layout, the language switch, and a phone-sized screen."""
from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import assert_chinese_glyphs, login, shot
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.browser


def test_login_page_is_in_chinese_with_real_glyphs(page, live_server, with_passwords):
    page.goto("/login")
    shot(page, "01-login-page")
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.title().startswith("登录 · 基层治理案件办理")
    assert page.locator("main h1").inner_text() == "登录"
    assert page.get_by_label("用户名", exact=True).is_visible()
    assert page.get_by_label("密码", exact=True).is_visible()
    assert page.get_by_role("button", name="登录", exact=True).is_visible()
    assert page.locator(".brand").inner_text() == "网格通"

    fonts = assert_chinese_glyphs(page, "main h1")
    assert_chinese_glyphs(page, "main form")
    assert_chinese_glyphs(page, ".brand")
    assert any("WenQuanYi" in f["familyName"] or "CJK" in f["familyName"] for f in fonts), fonts


def test_a_wrong_password_is_said_in_place(page, live_server, with_passwords):
    response = login(page, live_server, "member", "not the password", expect_success=False)
    shot(page, "01-wrong-password")
    assert response.status == 422
    assert page.url == f"{live_server}/login"
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误。"
    assert page.get_by_label("用户名", exact=True).input_value() == "member"  # kept for the next try
    assert page.get_by_label("密码", exact=True).input_value() == ""  # never sent back
    assert_chinese_glyphs(page, "[role=alert]")


def test_five_failures_lock_the_account(app, page, live_server, with_passwords):
    failures = app.config["LOGIN_MAX_FAILURES"]
    assert failures == 5
    for attempt in range(1, failures + 1):
        response = login(page, live_server, "member", f"guess {attempt}", expect_success=False)
        assert response.status == 422
        assert page.get_by_role("alert").inner_text() == "用户名或密码错误。"
    shot(page, "01-fifth-failure")

    response = login(page, live_server, "member", PASSWORD, expect_success=False)  # even the right one
    shot(page, "02-locked")
    assert response.status == 422
    assert page.get_by_role("alert").inner_text() == "登录失败次数过多，账号已暂时锁定，请稍后再试。"
    assert page.locator(".session .who").count() == 0

    login(page, live_server, "community", next="/no-such-page")  # someone else is not affected
    assert page.locator(".session .who").inner_text() == "community"


def test_signing_in_shows_the_signed_in_layout_and_signing_out_ends_it(page, live_server, with_passwords):
    # The start page is whichever workspace page exists; any page of the app carries the
    # layout, so land on one that exists in every state of the code (an unknown page).
    response = login(page, live_server, "member", next="/no-such-page")
    shot(page, "01-signed-in")
    assert response.status == 302
    assert page.locator(".session .who").inner_text() == "member"  # the display name
    assert page.get_by_role("link", name="登录", exact=True).count() == 0
    assert page.get_by_role("heading", name="未找到").is_visible()
    cookie = next(c for c in page.context.cookies() if c["name"] == "session")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax"

    with page.expect_navigation():
        page.get_by_role("button", name="退出", exact=True).click()
    shot(page, "02-signed-out")
    assert page.url == f"{live_server}/login"
    assert page.get_by_role("status").inner_text() == "您已退出登录。"
    assert page.locator(".session .who").count() == 0


def test_signing_in_lands_on_the_start_page(page, live_server, with_passwords):
    login(page, live_server, "member")
    shot(page, "01-start-page")
    assert page.locator(".session .who").inner_text() == "member"


def test_the_language_switch_shows_english_and_back(page, live_server, with_passwords):
    page.goto("/login")
    with page.expect_navigation():
        page.get_by_role("button", name="English", exact=True).click()
    shot(page, "01-english")
    assert page.url == f"{live_server}/login"
    assert page.locator("html").get_attribute("lang") == "en"
    assert page.locator("main h1").inner_text() == "Sign in"
    assert page.get_by_label("Username", exact=True).is_visible()
    assert page.get_by_label("Password", exact=True).is_visible()
    assert page.locator(".brand").inner_text() == "Gridcase"

    page.get_by_label("Username", exact=True).fill("member")
    page.get_by_label("Password", exact=True).fill("wrong")
    with page.expect_navigation():
        page.get_by_role("button", name="Sign in", exact=True).click()
    shot(page, "02-english-error")
    assert page.get_by_role("alert").inner_text() == "Wrong username or password."

    page.goto("/login")
    with page.expect_navigation():
        page.get_by_role("button", name="中文", exact=True).click()
    shot(page, "03-back-to-chinese")
    assert page.url == f"{live_server}/login"
    assert page.locator("html").get_attribute("lang") == "zh-CN"
    assert page.locator("main h1").inner_text() == "登录"


def test_switching_language_on_a_form_error_stays_on_the_page(page, live_server, with_passwords):
    login(page, live_server, "member", "wrong", expect_success=False)  # the form re-rendered for a POST
    redirects = []

    def keep_the_redirect(route):  # the browser sends its real Referer; stop before following the answer
        answer = route.fetch(max_redirects=0)
        redirects.append(answer.headers.get("location", ""))
        route.fulfill(status=200, content_type="text/plain", body=f"redirect to {redirects[-1]}")

    page.route("**/language", keep_the_redirect)
    with page.expect_navigation():
        page.get_by_role("button", name="English", exact=True).click()
    assert redirects and urlsplit(redirects[0]).path == "/login", redirects


def test_the_login_form_works_on_a_phone(phone_page, live_server, with_passwords):
    page = phone_page
    page.goto("/login")
    shot(page, "01-login-page")
    width = page.evaluate("window.innerWidth")
    assert width == 390
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the page scrolls sideways"
    for control in (page.get_by_label("用户名", exact=True), page.get_by_label("密码", exact=True),
                    page.get_by_role("button", name="登录", exact=True)):
        box = control.bounding_box()
        assert control.is_visible() and box is not None
        assert 0 <= box["x"] and box["x"] + box["width"] <= width, f"{control} is cut off: {box}"
        assert box["height"] >= 32, f"{control} is too small to tap: {box}"
    assert_chinese_glyphs(page, "main h1")

    page.get_by_label("用户名", exact=True).tap()
    page.keyboard.type("member")
    page.get_by_label("密码", exact=True).tap()
    page.keyboard.type("wrong")
    with page.expect_navigation():
        page.get_by_role("button", name="登录", exact=True).tap()
    shot(page, "02-wrong-password")
    assert page.get_by_role("alert").inner_text() == "用户名或密码错误。"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth"), "the error made the page scroll sideways"

    login(page, live_server, "member", next="/no-such-page")
    shot(page, "03-signed-in")
    assert page.get_by_role("button", name="退出", exact=True).is_visible()
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
