"""Dashboard pages: 治理概况 (headline figures, charts, metric table), 排名 (communities and
departments), 网格 (grid tree coloured by overdue load), 指标口径 (published definitions),
and CSV/XLSX export of every table. Thin views: read the request, call the service, commit
once (catching the facts up with the event log may write), render."""
from __future__ import annotations

import logging
from datetime import date, datetime, timedelta
from urllib.parse import urlencode

from flask import Blueprint, Response, abort, current_app, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user, login_required

from app.dashboard import charts, metrics as m, service
from app.db import commit, rollback
from app.errors import DomainError, InvalidInput
from app.web import NavItem, add_nav

log = logging.getLogger(__name__)

blp = Blueprint("dashboard", __name__, url_prefix="/dashboard")


def register(app) -> None:
    app.register_blueprint(blp)
    roles = frozenset(app.config["DASHBOARD_ROLES"])
    add_nav(NavItem("dashboard.overview", _l("Dashboard"), roles=roles))
    from app.jobs import register_periodic

    register_periodic("dashboard-catch-up", "app.dashboard.jobs.catch_up_job", 60)


_FILTER_MESSAGES = {
    "bad_period": lambda: _("Choose a month (2026-03), a quarter (2026-Q1) or a custom period with both dates."),
    "bad_date": lambda: _("A date is not valid: use YYYY-MM-DD."),
}


def _describe(error: DomainError) -> str:
    fields = getattr(error, "fields", None) or {}
    if error.code in _FILTER_MESSAGES:
        text = _FILTER_MESSAGES[error.code]()
        if error.code == "bad_period" and "to" in fields:
            text = _("The custom period must end after it starts and span at most three years.")
        return text
    if "level" in fields:
        return _("The class must be A, B, C or D.")
    if "grid" in fields:
        return _("That grid does not exist or is outside your scope.")
    if "process" in fields:
        return _("There is no such process.")
    return _("A filter value is not valid.")


def _context(page: str):
    """Filters from the request (bad values: an in-place message and the defaults), after
    catching the facts up with the event log. Returns (user, filters, messages, status)."""
    user = current_user._get_current_object()
    if not service.may_view(user):
        abort(403)
    service.catch_up()
    messages: list[str] = []
    status = 200
    try:
        filters = service.parse_filters(request.args, user)
    except InvalidInput as error:
        messages.append(_describe(error))
        filters = service.parse_filters({}, user)
        status = 400
    return user, filters, messages, status


def _common(user, filters, page: str) -> dict:
    today = datetime.now(m.LOCAL).date()
    months, quarters = [], []
    year, month = today.year, today.month
    for _i in range(12):
        months.append(f"{year:04d}-{month:02d}")
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    year, quarter = today.year, (today.month - 1) // 3 + 1
    for _i in range(6):
        quarters.append(f"{year}-Q{quarter}")
        year, quarter = (year - 1, 4) if quarter == 1 else (year, quarter - 1)
    args = filters.query_args()
    return {
        "page": page, "filters": filters, "args": args,
        "period_options": months + quarters,
        "grid_options": service.grid_options(user),
        "process_options": service.process_options(),
        "department_options": sorted(service.department_names().items()),
        "levels": m.levels(),
        "export_url": lambda table, fmt: url_for("dashboard.export", table=table, fmt=fmt) + "?" + urlencode(args),
        "pct": _pct, "num": _num,
    }


def _pct(value) -> str:
    return "—" if value is None else f"{value * 100:.1f}%"


def _num(value, digits: int = 1) -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:.{digits}f}"
    return f"{int(value)}"


@blp.get("/")
@login_required
def overview():
    user, filters, messages, status = _context("overview")
    data = service.overview(user, filters)
    trend = data["trend"]
    source_rows = []
    levels = [*m.levels(), "—"]
    for source, by_level in sorted(data["volume"].items()):
        source_rows.append((service.source_label(source), [by_level.get(level, 0) for level in levels]))
    page = render_template(
        "dashboard/overview.html", data=data, messages=messages,
        headline=[row for row in data["rows"] if row["metric"].headline],
        groups=_groups(data["rows"]),
        volume=service.volume_table(data), hours=service.hours_table(data),
        trend_chart=charts.line(
            [row["period"][2:] for row in trend],
            [(_("Reported"), [row["reported"] for row in trend]), (_("Closed"), [row["closed"] for row in trend])],
            title=_("Reported and closed cases, last six months"),
        ),
        ontime_chart=charts.hbar(
            [(row["period"], row["ontime_closing_rate"] * 100 if row["ontime_closing_rate"] is not None else None)
             for row in trend],
            title=_("On-time closing rate by month"), maximum=100,
        ),
        volume_chart=charts.stacked(source_rows, [_("Class %(level)s", level=l) if l != "—" else _("Other processes") for l in levels],
                                    title=_("Reported cases by source and class")),
        **_common(user, filters, "overview"),
    )
    commit()
    return page, status


def _groups(rows):
    names = {
        "volume": _("Volume"), "handling": _("Handling and closing"), "lights": _("Warnings and deadlines"),
        "levels": _("Classes, escalation and whistles"), "satisfaction": _("Satisfaction"),
        "deliberation": _("Deliberations (四议两公开)"),
    }
    groups: dict[str, list] = {}
    for row in rows:
        groups.setdefault(row["metric"].group, []).append(row)
    return [(names[key], groups[key]) for key in names if key in groups]


@blp.get("/rankings")
@login_required
def rankings():
    user, filters, messages, status = _context("rankings")
    ranked = service.rankings(user, filters)
    page = render_template(
        "dashboard/rankings.html", messages=messages, ranked=ranked,
        community_chart=charts.hbar(
            [(row["name"], row["ontime_closing_rate"] * 100 if row["ontime_closing_rate"] is not None else None)
             for row in ranked["communities"]],
            title=_("On-time closing rate by community"), maximum=100),
        department_chart=charts.hbar(
            [(row["name"], row["ontime_closing_rate"] * 100 if row["ontime_closing_rate"] is not None else None)
             for row in ranked["departments"]],
            title=_("On-time closing rate by department"), maximum=100),
        **_common(user, filters, "rankings"),
    )
    commit()
    return page, status


@blp.get("/grids")
@login_required
def grids():
    user, filters, messages, status = _context("grids")
    rows = service.grid_tree(user, filters)
    page = render_template("dashboard/grids.html", messages=messages, rows=rows, **_common(user, filters, "grids"))
    commit()
    return page, status


@blp.get("/definitions")
@login_required
def definitions():
    user = current_user._get_current_object()
    if not service.may_view(user):
        abort(403)
    from app.dashboard.facts import MEANINGS

    return render_template("dashboard/definitions.html", metrics=m.METRICS, unsupported=m.UNSUPPORTED,
                           meanings=MEANINGS, page="definitions")


@blp.get("/export/<table>.<fmt>")
@login_required
def export(table: str, fmt: str):
    user = current_user._get_current_object()
    if not service.may_view(user):
        abort(403)
    if fmt not in ("csv", "xlsx") or table not in service.EXPORTABLE:
        abort(404)
    service.catch_up()
    try:
        filters = service.parse_filters(request.args, user)
    except InvalidInput as error:
        rollback()
        return render_template("dashboard/bad_export.html", messages=[_describe(error)], page="export"), 400
    data = service.table_for_export(user, filters, table)
    commit()
    name = f"gridcase-{table}-{filters.period.key.replace('..', '_')}.{fmt}"
    if fmt == "csv":
        body, mimetype = service.to_csv(data), "text/csv; charset=utf-8"
    else:
        subtitle = _("Period: %(period)s", period=filters.period.label)
        body = service.to_xlsx(data, subtitle)
        mimetype = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    return Response(body, mimetype=mimetype, headers={"Content-Disposition": f'attachment; filename="{name}"'})
