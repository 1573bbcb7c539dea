"""Configuration: defaults → instance/config.py → environment → validation."""
from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(RuntimeError):
    pass


def defaults(instance_path: str) -> dict[str, Any]:
    return {
        "SQLALCHEMY_DATABASE_URI": f"sqlite:///{Path(instance_path) / 'gridcase.sqlite3'}",
        "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
        "REDIS_URL": None,
        "PROCESS_LIBRARY": str(PROJECT_ROOT / "bpmn"),
        "ROLES_FILE": None,  # default: <PROCESS_LIBRARY>/roles.json
        # Business calendar (working periods, holidays, make-up days); default:
        # <PROCESS_LIBRARY>/calendar.json, or the built-in default when that file is absent.
        "CALENDAR_FILE": None,
        # Case references such as SJ-2026-000123: prefix per process id, "AJ" (案件) otherwise.
        "CASE_REFERENCE_PREFIXES": {
            "grid_quick": "SJ",
            "incident_abcd": "SJ",
            "appeal_loop": "SQ",
            "four_deliberations": "YS",
        },
        "CASE_REFERENCE_DEFAULT_PREFIX": "AJ",
        # Cases that start cases: a message a process throws (key) starts a case of
        # another process in the same grid; when that case ends, its outcome goes back
        # to the waiting parent as `reply_message`. Start data = `defaults` (local
        # settings such as meeting type), overridden by the payload keys in `start_data`.
        "CASE_LINKS": {
            "deliberation_requested": {
                "start_process": "four_deliberations",
                "start_data": ["topic", "description", "meeting_type", "one_shoulder", "party_members_total"],
                "defaults": {"meeting_type": "residents_meeting", "one_shoulder": True, "party_members_total": 50},
                "reply_message": "deliberation_concluded",
                "reply_payload": {"passed": "deliberation_passed", "resolution": "deliberation_resolution"},
            },
        },
        # Pages may upload photos; API bodies are JSON and stay small.
        "MAX_CONTENT_LENGTH": 16 * 1024 * 1024,
        "API_MAX_CONTENT_LENGTH": 1024 * 1024,
        "ATTACHMENT_MAX_BYTES": 10 * 1024 * 1024,
        "ATTACHMENT_TYPES": ["image/jpeg", "image/png", "image/webp", "application/pdf"],
        # Dispatched work goes to one department: a task in one of these roles is routed to the
        # department named (by code or name) in the first of these case data keys that has one.
        "DEPARTMENT_ROLES": ["department_staff", "district_department"],
        "DEPARTMENT_FIELDS": ["assigned_department", "department"],
        # Roles that call residents back and so see phone numbers unmasked.
        "PHONE_VISIBLE_ROLES": ["grid_member", "community_staff", "secretary"],
        # Governance dashboard: roles that lead or supervise see the figures of the grids
        # where they hold the role (administrators see everything).
        "DASHBOARD_ROLES": ["grid_leader", "community_staff", "secretary", "party_branch", "two_committees",
                            "area_lead", "duty_chief", "dispatcher", "supervisor", "auditor"],
        # SLA (issue 5): who approves deadline extensions (延期) within their grid scope, who is
        # told about overdue work, the longest extension, the near-due/overdue scan period.
        "EXTENSION_APPROVER_ROLES": ["supervisor", "duty_chief"],
        "SUPERVISOR_ROLES": ["supervisor", "duty_chief"],
        "EXTENSION_MAX_WORKING_DAYS": 30,
        "NOTIFY_SKIP_ROLES": ["resident"],   # roles not told about new work (no accounts)
        "DEADLINE_SCAN_SECONDS": 60,
        # Webhooks: attempts per delivery and the wait before each retry (seconds).
        "WEBHOOK_MAX_ATTEMPTS": 6,
        "WEBHOOK_BACKOFF_SECONDS": [30, 120, 600, 1800, 7200],
        "WEBHOOK_TIMEOUT_SECONDS": 10,
        # Disclosure board and monthly follow-up (issue 8) [D]: who sees and records the
        # follow-up (supervising roles, within their grid scope), the day of the next month the
        # call back is due, days after the posting period before an unimplemented resolution
        # counts as overdue, page size of the board's lists. PUBLIC_RATE_LIMITS["objection"]
        # (hits, seconds) limits objections per address (default 5 per hour).
        "DISCLOSURE_FOLLOWUP_ROLES": ["supervisor", "duty_chief"],
        "DISCLOSURE_FOLLOWUP_DAY": 20,
        "DISCLOSURE_IMPLEMENTATION_DAYS": 60,
        "DISCLOSURE_PAGE_SIZE": 20,
        "PAGE_SIZE_DEFAULT": 50,
        "PAGE_SIZE_MAX": 200,
        "TIMER_SWEEP_SECONDS": 30,
        # Background jobs (app.jobs, app.queue): a timer's nudge job also fires other overdue
        # cases for this long (a burst of timers due together is shared by every worker; 0: off);
        # one sweep stops after TIMER_SWEEP_BUDGET_SECONDS (the next one carries on);
        # PERIODIC_JOB_SECONDS overrides a registered periodic job's interval by name.
        "TIMER_NUDGE_CATCH_UP_SECONDS": 2,
        "TIMER_SWEEP_BUDGET_SECONDS": 240,
        "PERIODIC_JOB_SECONDS": {},
        "RUN_TIMER_SWEEPER": False,  # `gridcase serve` turns it on in embedded mode
        # flask-smorest / OpenAPI
        "API_TITLE": "Gridcase API",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api",
        "OPENAPI_JSON_PATH": "openapi.json",
        "OPENAPI_SWAGGER_UI_PATH": "/docs",
        "OPENAPI_SWAGGER_UI_URL": "/static/vendor/swagger-ui/",
        "JSON_SORT_KEYS": False,
        # Sign-in and sessions
        "LOGIN_MAX_FAILURES": 5,
        "LOGIN_LOCKOUT_MINUTES": 15,
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": False,  # set True behind HTTPS (instance/config.py)
        "REMEMBER_COOKIE_HTTPONLY": True,
        "REMEMBER_COOKIE_SAMESITE": "Lax",
        "WTF_CSRF_TIME_LIMIT": 8 * 3600,
        # Language: Chinese first, English available
        "BABEL_DEFAULT_LOCALE": "zh_CN",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
    }


def from_environment() -> dict[str, Any]:
    values: dict[str, Any] = {}
    if os.environ.get("DATABASE_URL"):
        values["SQLALCHEMY_DATABASE_URI"] = normalise_database_url(os.environ["DATABASE_URL"])
    if os.environ.get("REDIS_URL"):
        values["REDIS_URL"] = os.environ["REDIS_URL"]
    if os.environ.get("SECRET_KEY"):
        values["SECRET_KEY"] = os.environ["SECRET_KEY"]
    if os.environ.get("GRIDCASE_PROCESS_LIBRARY"):
        values["PROCESS_LIBRARY"] = os.environ["GRIDCASE_PROCESS_LIBRARY"]
    return values


def normalise_database_url(url: str) -> str:
    """Accept the usual postgres:// forms and use the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def ensure_secret_key(config: dict[str, Any], instance_path: str) -> None:
    if config.get("SECRET_KEY"):
        return
    key_file = Path(instance_path) / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_hex(32))
        key_file.chmod(0o600)
    config["SECRET_KEY"] = key_file.read_text().strip()


def validate(config: dict[str, Any]) -> None:
    uri = config.get("SQLALCHEMY_DATABASE_URI") or ""
    if not (uri.startswith("sqlite:") or uri.startswith("postgresql")):
        raise ConfigError(f"unsupported database URL {uri!r}: use SQLite or PostgreSQL")
    library = Path(config["PROCESS_LIBRARY"])
    if not library.is_dir():
        raise ConfigError(f"PROCESS_LIBRARY {library} is not a folder")
    roles = Path(config.get("ROLES_FILE") or library / "roles.json")
    if not roles.is_file():
        raise ConfigError(f"roles file {roles} not found")
    config["ROLES_FILE"] = str(roles)
    validate_calendar(config, library)
    for key in ("PAGE_SIZE_DEFAULT", "PAGE_SIZE_MAX", "TIMER_SWEEP_SECONDS", "MAX_CONTENT_LENGTH",
                "LOGIN_MAX_FAILURES", "LOGIN_LOCKOUT_MINUTES"):
        if not isinstance(config.get(key), int) or config[key] <= 0:
            raise ConfigError(f"{key} must be a positive integer")


def validate_calendar(config: dict[str, Any], library: Path) -> None:
    """Resolve CALENDAR_FILE and check that the file parses (bad dates, periods, keys).

    An explicit CALENDAR_FILE must exist; the default <PROCESS_LIBRARY>/calendar.json
    may be absent (then CALENDAR_FILE stays None and the built-in default is used)."""
    from workflows.calendar import BusinessCalendar, CalendarError

    explicit = config.get("CALENDAR_FILE")
    path = Path(explicit) if explicit else library / "calendar.json"
    if not path.is_file():
        if explicit:
            raise ConfigError(f"calendar file {path} not found")
        config["CALENDAR_FILE"] = None
        return
    try:
        BusinessCalendar.from_file(path)
    except CalendarError as exc:
        raise ConfigError(f"invalid business calendar: {exc}") from None
    config["CALENDAR_FILE"] = str(path)
