"""Signing in: Chinese by default, CSRF on the form, lockout after repeated failures."""
from __future__ import annotations

from tests.web.conftest import PASSWORD, csrf_token, sign_in


def test_login_page_speaks_chinese_and_switches_to_english(client, with_passwords):
    page = client.get("/login")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert '<html lang="zh-CN">' in html and "登录" in html and "用户名" in html
    switched = client.post("/language", data={"language": "en", "next": "/login", "csrf_token": csrf_token(html)})
    assert switched.status_code == 302
    english = client.get("/login").get_data(as_text=True)
    assert '<html lang="en">' in english and "Sign in" in english and "Username" in english


def test_a_form_without_its_csrf_token_is_refused(client, with_passwords):
    response = client.post("/login", data={"username": "member", "password": PASSWORD})
    assert response.status_code == 400
    assert "表单已过期或来源无效" in response.get_data(as_text=True)


def test_wrong_password_is_said_in_place_and_right_password_signs_in(client, with_passwords):
    wrong = sign_in(client, "member", "nope")
    assert wrong.status_code == 422
    assert "用户名或密码错误" in wrong.get_data(as_text=True)
    right = sign_in(client, "member")
    assert right.status_code == 302
    (cookie,) = [c for c in right.headers.getlist("Set-Cookie") if c.startswith("session=")]
    assert "HttpOnly" in cookie and "SameSite=Lax" in cookie


def test_repeated_failures_lock_the_account(app, client, with_passwords):
    for _ in range(app.config["LOGIN_MAX_FAILURES"]):
        assert sign_in(client, "member", "guess").status_code == 422
    locked = sign_in(client, "member")  # even the right password, for a while
    assert locked.status_code == 422
    assert "账号已暂时锁定" in locked.get_data(as_text=True)
    assert sign_in(client, "community").status_code == 302  # others are not affected


def test_unknown_pages_get_a_page_not_json(client, with_passwords):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert "text/html" in response.content_type
    assert "未找到" in response.get_data(as_text=True)


def test_signing_out_needs_a_post_with_csrf(client, with_passwords):
    assert sign_in(client, "member").status_code == 302
    page = client.get("/no-such-page").get_data(as_text=True)  # any page carries the layout's token
    response = client.post("/logout", data={"csrf_token": csrf_token(page)})
    assert response.status_code == 302
