"""Helpers for page tests: sign in through the real login form, with its CSRF token."""
from __future__ import annotations

import re

import pytest

PASSWORD = "correct horse battery"


def csrf_token(html: str) -> str:
    match = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(r'value="([^"]+)"[^>]*name="csrf_token"', html)
    assert match, "the page has no CSRF token"
    return match.group(1)


def sign_in(client, username: str, password: str = PASSWORD):
    page = client.get("/login")
    return client.post("/login", data={"username": username, "password": password, "csrf_token": csrf_token(page.get_data(as_text=True))})


@pytest.fixture
def with_passwords(app, world):
    """Give every test person the same password (argon2-hashed) so they can use the pages."""
    from app.db import commit, db
    from app.people.models import User
    from app.people.service import _hasher

    with app.app_context():
        hashed = _hasher.hash(PASSWORD)
        for user in db.session.query(User):
            user.password_hash = hashed
        commit()
        db.session.remove()
    return world
