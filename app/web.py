"""What every page shares: language choice, the navigation registry and page errors.

Features register their navigation entries here (label, endpoint, roles that see it, and
an optional badge count) so the base layout never needs editing when a page is added.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from flask import Blueprint, current_app, has_request_context, redirect, request, session, url_for
from flask_babel import lazy_gettext as _l
from flask_login import current_user

LANGUAGES = {"zh_CN": "中文", "en": "English"}
DEFAULT_LANGUAGE = "zh_CN"


def select_locale() -> str:
    if not has_request_context():
        return DEFAULT_LANGUAGE  # CLI and jobs
    language = session.get("language")
    return language if language in LANGUAGES else DEFAULT_LANGUAGE


@dataclass(frozen=True)
class NavItem:
    endpoint: str
    label: object                                  # a lazy translated string
    roles: frozenset[str] | None = None            # None: every signed-in user
    admin_only: bool = False
    count: Callable[[object], int] | None = None   # badge: e.g. open items for the user
    public: bool = False                           # shown to anonymous visitors too

    def visible_to(self, user) -> bool:
        if not getattr(user, "is_authenticated", False):
            return self.public
        if self.admin_only:
            return user.is_admin
        if self.roles is None:
            return True
        return user.is_admin or any(a.role in self.roles for a in user.roles)


NAV: list[NavItem] = []


def add_nav(item: NavItem) -> None:
    if all(existing.endpoint != item.endpoint for existing in NAV):
        NAV.append(item)


def nav_for(user) -> list[tuple[NavItem, int | None]]:
    items = []
    for item in NAV:
        if item.endpoint in current_app.view_functions and item.visible_to(user):
            items.append((item, item.count(user) if item.count and user.is_authenticated else None))
    return items


site = Blueprint("site", __name__)

# Where people land after signing in when every role they hold belongs to one feature's page
# (an auditor on the audit search, a process owner on the library); everyone else lands on
# their work. Features register themselves: add_landing("audit.search", {"auditor"}).
LANDINGS: list[tuple[str, frozenset[str]]] = []


def add_landing(endpoint: str, roles: set[str] | frozenset[str]) -> None:
    if all(existing != endpoint for existing, _ in LANDINGS):
        LANDINGS.append((endpoint, frozenset(roles)))


def _landing_for(user) -> str | None:
    held = {assignment.role for assignment in user.roles}
    if user.is_admin or not held:
        return None
    for endpoint, roles in LANDINGS:
        if held <= roles and endpoint in current_app.view_functions:
            return endpoint
    return None


@site.get("/")
def home():
    if current_user.is_authenticated:
        landing = _landing_for(current_user)
        if landing is not None:
            return redirect(url_for(landing))
    if current_user.is_authenticated and "work.inbox" in current_app.view_functions:
        return redirect(url_for("work.inbox"))
    if "public.index" in current_app.view_functions:
        return redirect(url_for("public.index"))
    return redirect(url_for("people.login"))


@site.post("/language")
def set_language():
    language = request.form.get("language")
    if language in LANGUAGES:
        session["language"] = language
    return redirect(_local_target(request.form.get("next") or request.referrer))


def _local_target(target: str | None) -> str:
    """A path on this site to go back to; anything pointing elsewhere goes home."""
    from urllib.parse import urlsplit

    if not target:
        return url_for("site.home")
    parts = urlsplit(target)
    if parts.netloc and parts.netloc != request.host:
        return url_for("site.home")  # never redirect off-site
    path = parts.path or "/"
    if not path.startswith("/") or path.startswith("//"):
        return url_for("site.home")
    return path + (f"?{parts.query}" if parts.query else "")


def register_context(app) -> None:
    @app.context_processor
    def _inject():
        return {
            "nav_items": nav_for(current_user),
            "languages": LANGUAGES,
            "current_language": select_locale(),
        }


_ = _l  # re-export for modules that declare nav labels
