"""Who is calling the API: bearer tokens for integrations, HTTP Basic for people.

This is view-layer code (it reads the request); services receive the user.
"""
from __future__ import annotations

import base64
import binascii
from functools import wraps

from flask import g, request

from app.errors import NotAuthenticated
from app.people import service as people
from app.people.models import User


def current_user() -> User:
    user = getattr(g, "api_user", None)
    if user is None:
        user = _authenticate()
        g.api_user = user
    return user


def _authenticate() -> User:
    header = request.headers.get("Authorization", "")
    scheme, _, credentials = header.partition(" ")
    scheme = scheme.lower()
    user = None
    if scheme == "bearer" and credentials:
        user = people.user_for_token(credentials.strip())
    elif scheme == "basic" and credentials:
        try:
            username, _, password = base64.b64decode(credentials.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise NotAuthenticated("malformed Basic credentials") from None
        user = people.check_password(username, password)
    if user is None:
        raise NotAuthenticated(
            "authentication required: send 'Authorization: Bearer <token>' or HTTP Basic credentials"
        )
    return user


def login_required(view):
    @wraps(view)
    def wrapper(*args, **kwargs):
        current_user()
        return view(*args, **kwargs)

    return wrapper
