"""Personal data on screens: phone numbers are masked unless the viewer's role needs them."""
from __future__ import annotations

import re

from flask import current_app

_DIGITS = re.compile(r"\d")


def mask_phone(phone: str | None) -> str:
    """13812345678 → 138****5678; short or odd values keep only their last two characters."""
    if not phone:
        return ""
    text = str(phone).strip()
    digits = _DIGITS.findall(text)
    if len(digits) == 13 and digits[:2] == ["8", "6"]:
        digits = digits[2:]  # +86 country code
    if len(digits) >= 7:
        return f"{''.join(digits[:3])}****{''.join(digits[-4:])}"
    return "*" * max(len(text) - 2, 1) + text[-2:]


def may_see_phone(user) -> bool:
    if user is None or not getattr(user, "is_authenticated", False):
        return False
    if user.is_admin:
        return True
    allowed = set(current_app.config["PHONE_VISIBLE_ROLES"])
    return any(assignment.role in allowed for assignment in user.roles)


def phone_for(user, phone: str | None) -> str:
    return (phone or "") if may_see_phone(user) else mask_phone(phone)
