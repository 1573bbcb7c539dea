"""Dashboard figures for one user's scope and filters: headline, rankings, grid tree, exports.

Services flush only (``facts.refresh`` may write caught-up rows); the view commits once.
Every table a page shows is a :class:`Table`, so CSV/XLSX export is the same code path.
"""
from __future__ import annotations

import csv
import io
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Iterable, Mapping

from flask import current_app
from flask_babel import gettext as _
from sqlalchemy import and_, false, func, or_, select

from app.dashboard import facts as facts_module
from app.dashboard import metrics as m
from app.dashboard.models import CaseFacts as F
from app.db import db
from app.errors import InvalidInput, NotFound, PermissionDenied
from app.people.models import Department, GridNode, User
from app.processes.models import ProcessVersion
from app.timeutil import utcnow
from app.work.models import OPEN_STATES, WorkItem

TREND_MONTHS = 6
MAX_FILTER_LENGTH = 64


@dataclass(frozen=True)
class Filters:
    period: m.Period
    grid: str | None = None
    department: str | None = None
    process: str | None = None
    level: str | None = None

    def query_args(self) -> dict[str, str]:
        args = {"period": self.period.key if self.period.kind != "custom" else "custom"}
        if self.period.kind == "custom":
            args["from"] = self.period.start.isoformat()
            args["to"] = (self.period.end - timedelta(days=1)).isoformat()
        for key in ("grid", "department", "process", "level"):
            if getattr(self, key):
                args[key] = getattr(self, key)
        return args


@dataclass
class Table:
    key: str
    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)


# -- scope and filters --------------------------------------------------------------
def scope_paths(user: User) -> tuple[str, ...] | None:
    """Grid paths where the user holds a leading or supervising role; None = everything (admin)."""
    if user.is_admin:
        return None
    wanted = set(current_app.config["DASHBOARD_ROLES"])
    return tuple(sorted({a.grid_node.path for a in user.roles if a.role in wanted}))


def may_view(user: User) -> bool:
    paths = scope_paths(user)
    return paths is None or bool(paths)


def parse_filters(args: Mapping[str, str], user: User, *, today: date | None = None) -> Filters:
    """Filters from query arguments. Bad values raise InvalidInput naming the field."""
    period = m.parse_period(args.get("period"), args.get("from"), args.get("to"), today=today)
    values: dict[str, str | None] = {}
    for key in ("grid", "department", "process", "level"):
        value = (args.get(key) or "").strip()
        if len(value) > MAX_FILTER_LENGTH:
            raise InvalidInput(f"{key}: too long", code="bad_filter", fields={key: ["too long"]})
        values[key] = value or None
    if values["level"] and values["level"] not in m.levels():
        raise InvalidInput("class must be A, B, C or D", code="bad_filter", fields={"level": ["class must be A, B, C or D"]})
    if values["grid"]:
        node = db.session.scalar(select(GridNode).where(GridNode.code == values["grid"]))
        if node is None:
            raise InvalidInput(f"no grid {values['grid']!r}", code="bad_filter", fields={"grid": ["no such grid"]})
        paths = scope_paths(user)
        if paths is not None and not any(node.path.startswith(p) or p.startswith(node.path) for p in paths):
            raise InvalidInput("that grid is outside your scope", code="bad_filter",
                               fields={"grid": ["outside your scope"]})
    if values["process"] and values["process"] not in process_ids():
        raise InvalidInput(f"no process {values['process']!r}", code="bad_filter", fields={"process": ["no such process"]})
    return Filters(period, **values)


def process_ids() -> list[str]:
    return sorted(set(db.session.scalars(select(ProcessVersion.process_id))))


def process_options() -> list[tuple[str, str]]:
    rows = db.session.execute(select(ProcessVersion.process_id, ProcessVersion.name).order_by(ProcessVersion.version))
    names: dict[str, str] = {}
    for pid, name in rows:
        names[pid] = name or pid
    return sorted(names.items())


def department_names() -> dict[str, str]:
    return {d.code: d.name for d in db.session.scalars(select(Department))}


def grid_options(user: User) -> list[Any]:
    """Grid nodes in scope (street to grid, tree order) as light rows: code, name, level, path."""
    query = select(GridNode.code, GridNode.name, GridNode.level, GridNode.path).where(
        GridNode.level.in_(("street", "community", "block", "grid"))).order_by(GridNode.path)
    paths = scope_paths(user)
    if paths is not None:
        if not paths:
            return []
        query = query.where(or_(*[GridNode.path.startswith(p) for p in paths]))
    return list(db.session.execute(query))


def _conditions(user: User, filters: Filters) -> list[Any]:
    paths = scope_paths(user)
    where: list[Any] = []
    if paths is not None:
        where.append(or_(*[F.grid_path.startswith(p) for p in paths]) if paths else false())
    if filters.grid:
        node = db.session.scalar(select(GridNode).where(GridNode.code == filters.grid))
        where.append(F.grid_path.startswith(node.path))
    if filters.department:
        where.append(F.department == filters.department)
    if filters.process:
        where.append(F.process_id == filters.process)
    if filters.level:
        where.append(F.level == filters.level)
    return where


def require_viewer(user: User) -> None:
    if not may_view(user):
        raise PermissionDenied("the dashboard is for roles that lead or supervise", code="not_dashboard_role")


def catch_up(*, exact: bool = False) -> int:
    """Fold the events appended since the last look into the facts (flushes only)."""
    from app.runtime import runtime

    return facts_module.refresh(runtime().calendar, exact=exact)


# -- queries --------------------------------------------------------------------------
def counts(user: User, filters: Filters, period: m.Period) -> dict[str, float]:
    return counts_pair(user, filters, period, None)[0]


def counts_pair(user: User, filters: Filters, period: m.Period, previous: m.Period | None) -> tuple[dict[str, float], dict[str, float]]:
    """Counters of ``period`` (and of ``previous``): one scan each of the facts that can count in
    it (two narrow scans cost less than one wide one evaluating both periods' counters per row)."""
    current = _scan(user, filters, period)
    return current, (_scan(user, filters, previous) if previous is not None else {})


def _scan(user: User, filters: Filters, period: m.Period, only: tuple[str, ...] | None = None,
          milestones: tuple[str, ...] = m.MILESTONES) -> dict[str, float]:
    """The counters of one period: one scan of the cases with a milestone in it, and one of the
    overdue backlog (which reaches back before the period)."""
    names = only or tuple(n for n in m.counter_names() if n not in m.BACKLOG_COUNTERS)
    params = m.period_params(period)
    result: dict[str, float] = {}
    periodic = tuple(n for n in names if n not in m.BACKLOG_COUNTERS)
    if periodic:
        row = db.session.execute(
            select(*m.counter_columns("", periodic)).where(*_conditions(user, filters), m.window("", milestones)),
            params,
        ).one()
        result.update({key: float(value or 0) for key, value in row._mapping.items()})
    backlog = m.BACKLOG_COUNTERS if only is None else tuple(n for n in names if n in m.BACKLOG_COUNTERS)
    if backlog:
        row = db.session.execute(
            select(*m.counter_columns("", backlog)).where(*_conditions(user, filters), m.backlog_window()), params,
        ).one()
        result.update({key: float(value or 0) for key, value in row._mapping.items()})
    return result


def grouped_counts(user: User, filters: Filters) -> list[tuple[str, str | None, dict[str, float]]]:
    """Counters of the current period per (grid path, department): rankings roll these up."""
    rows = db.session.execute(
        select(F.grid_path, F.department, *m.counter_columns("", RANKING_COUNTERS))
        .where(*_conditions(user, filters), m.window())
        .group_by(F.grid_path, F.department),
        m.period_params(filters.period),
    )
    result = []
    for row in rows:
        mapping = dict(row._mapping)
        path, department = mapping.pop("grid_path"), mapping.pop("department")
        result.append((path, department, {k: float(v or 0) for k, v in mapping.items()}))
    return result


def _sum(items: Iterable[Mapping[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for item in items:
        for key, value in item.items():
            total[key] = total.get(key, 0.0) + value
    return total


def overview(user: User, filters: Filters, *, parts: tuple[str, ...] = ("metrics", "volume", "hours", "trend")) -> dict[str, Any]:
    previous_period = filters.period.previous()
    current, previous = counts_pair(user, filters, filters.period, previous_period)
    now_values, before_values = m.compute(current), m.compute(previous)
    rows = []
    for metric in m.METRICS:
        value, before = now_values[metric.key], before_values[metric.key]
        delta = value - before if value is not None and before is not None else None
        rows.append({
            "metric": metric, "value": value, "previous": before, "delta": delta,
            "numerator": current.get(metric.numerator, 0),
            "denominator": current.get(metric.denominator, 0) if metric.denominator else None,
            "trend": _direction(delta, metric.higher_is_better),
        })
    return {
        "period": filters.period, "previous_period": previous_period,
        "rows": rows, "counts": current,
        "volume": volume(user, filters) if "volume" in parts else {},
        "hours": handling_hours(user, filters) if "hours" in parts else [],
        "trend": trend(user, filters) if "trend" in parts else [],
    }


def _direction(delta: float | None, higher_is_better: bool) -> str:
    if delta is None or abs(delta) < 1e-9:
        return "flat"
    return "better" if (delta > 0) == higher_is_better else "worse"


def volume(user: User, filters: Filters) -> dict[str, Any]:
    """Cases reported in the period by source and by first class (A–D; '—' for other processes)."""
    rows = db.session.execute(
        select(F.source, F.initial_level, func.count())
        .where(*_conditions(user, filters), F.reported_at >= filters.period.start_at, F.reported_at < filters.period.end_at)
        .group_by(F.source, F.initial_level)
    )
    by_source: dict[str, dict[str, int]] = {}
    for source, level, n in rows:
        by_source.setdefault(source or "—", {})[level or "—"] = int(n)
    return by_source


def handling_hours(user: User, filters: Filters) -> list[dict[str, Any]]:
    """Per class at closure: cases closed in the period, mean and p90 working hours."""
    rows = db.session.execute(
        select(F.closed_level, F.handling_hours)
        .where(*_conditions(user, filters), F.closed_at >= filters.period.start_at,
               F.closed_at < filters.period.end_at, F.handling_hours.is_not(None))
    )
    by_level: dict[str, list[float]] = {}
    for level, hours in rows:
        by_level.setdefault(level or "—", []).append(float(hours))
    result = []
    for level in [*m.levels(), "—"]:
        values = by_level.get(level, [])
        if level == "—" and not values:
            continue
        result.append({
            "level": level, "n": len(values),
            "mean": sum(values) / len(values) if values else None,
            "p90": m.percentile(values, 0.9),
        })
    return result


def trend(user: User, filters: Filters) -> list[dict[str, Any]]:
    """The last TREND_MONTHS months up to the period's end: reported, closed, on-time closing rate."""
    last = filters.period.end - timedelta(days=1)
    months: list[m.Period] = []
    year, month = last.year, last.month
    for _ in range(TREND_MONTHS):
        months.append(m.parse_period(f"{year:04d}-{month:02d}"))
        year, month = (year - 1, 12) if month == 1 else (year, month - 1)
    months.reverse()
    # One narrow scan per month (four counters over that month's cases) reads far fewer
    # (row, counter) pairs than one scan of six months evaluating 24 counters per row.
    wanted = ("reported", "closed", "closed_on_time", "should_close")
    row = {}
    for index, period in enumerate(months):
        for key, value in _scan(user, filters, period, wanted, m.TREND_MILESTONES).items():
            row[f"{key}_{index}"] = value
    result = []
    for index, period in enumerate(months):
        should = row[f"should_close_{index}"]
        result.append({
            "period": period.key,
            "reported": int(row[f"reported_{index}"]),
            "closed": int(row[f"closed_{index}"]),
            "ontime_closing_rate": (row[f"closed_on_time_{index}"] / should) if should else None,
        })
    return result


RANKING_METRICS = ("ontime_closing_rate", "closing_rate", "ontime_handling_rate", "satisfaction_rate", "mean_hours")
RANKING_COUNTERS = ("reported", "closed", "red", "closed_on_time", "should_close", "handled_on_time", "should_handle",
                    "satisfied", "rated", "hours_sum", "hours_n")


def rankings(user: User, filters: Filters) -> dict[str, list[dict[str, Any]]]:
    """Communities and departments, best on-time closing rate first (no figure: last)."""
    grouped = grouped_counts(user, filters)
    communities = list(db.session.scalars(select(GridNode).where(GridNode.level == "community").order_by(GridNode.path)))
    by_community: dict[int, list[dict[str, float]]] = {}
    for path, _department, values in grouped:
        for node in communities:
            if path.startswith(node.path):
                by_community.setdefault(node.id, []).append(values)
                break
    community_rows = [
        _ranking_row(node.name, node.code, _sum(by_community[node.id])) for node in communities if node.id in by_community
    ]
    names = department_names()
    by_department: dict[str, list[dict[str, float]]] = {}
    for _path, department, values in grouped:
        if department:
            by_department.setdefault(department, []).append(values)
    department_rows = [
        _ranking_row(names.get(code, code), code, _sum(values)) for code, values in by_department.items()
    ]
    return {"communities": _rank(community_rows), "departments": _rank(department_rows)}


def _ranking_row(name: str, code: str, values: Mapping[str, float]) -> dict[str, Any]:
    figures = m.compute(values)
    return {
        "name": name, "code": code,
        "reported": int(values.get("reported", 0)), "closed": int(values.get("closed", 0)),
        "red": int(values.get("red", 0)),
        **{key: figures[key] for key in RANKING_METRICS},
    }


def _rank(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows.sort(key=lambda r: (r["ontime_closing_rate"] is None, -(r["ontime_closing_rate"] or 0), -r["closed"], r["code"]))
    for position, row in enumerate(rows, start=1):
        row["rank"] = position
    return rows


def grid_tree(user: User, filters: Filters, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Every grid node in scope with its open and overdue work items (this node and below),
    now. Work items are the projection of open tasks; the period does not apply."""
    now = now or utcnow()
    paths = scope_paths(user)
    query = select(WorkItem.grid_path, func.count(), func.coalesce(func.sum(
        _overdue_case(now)), 0)).where(WorkItem.state.in_(OPEN_STATES))
    if paths is not None:
        query = query.where(or_(*[WorkItem.grid_path.startswith(p) for p in paths]) if paths else false())
    if filters.process:
        query = query.where(WorkItem.process_id == filters.process)
    counts_by_path = [(path, int(n), int(overdue)) for path, n, overdue in db.session.execute(query.group_by(WorkItem.grid_path))]
    nodes = grid_options(user)
    if filters.grid:
        root = db.session.scalar(select(GridNode).where(GridNode.code == filters.grid))
        nodes = [n for n in nodes if n.path.startswith(root.path)]
    # Roll every path's counts up to each of its ancestors once: O(paths x depth), not O(nodes x paths).
    totals: dict[str, list[int]] = {}
    for path, n, overdue in counts_by_path:
        parts = [p for p in path.split("/") if p]
        for depth in range(1, len(parts) + 1):
            entry = totals.setdefault("/" + "/".join(parts[:depth]) + "/", [0, 0])
            entry[0] += n
            entry[1] += overdue
    result = []
    base_depth = min((n.path.count("/") for n in nodes), default=0)
    for node in nodes:
        open_items, overdue = totals.get(node.path, (0, 0))
        result.append({
            "node": node, "depth": node.path.count("/") - base_depth,
            "open": open_items, "overdue": overdue, "load": _load(open_items, overdue),
        })
    return result


def _overdue_case(now: datetime) -> Any:
    from sqlalchemy import case

    return case((and_(WorkItem.due_at.is_not(None), WorkItem.due_at < now), 1), else_=0)


def _load(open_items: int, overdue: int) -> str:
    """Colour band of a node: none / low (< 10% of open items overdue) / mid (< 30%) / high."""
    if not overdue:
        return "none"
    share = overdue / open_items if open_items else 1
    return "low" if share < 0.1 else "mid" if share < 0.3 else "high"


# -- tables for pages and exports --------------------------------------------------------
def _pct(value: float | None) -> Any:
    return round(value * 100, 1) if value is not None else None


def _figure(metric: m.Metric, value: float | None) -> Any:
    if value is None:
        return None
    if metric.kind == "rate":
        return _pct(value)
    if metric.kind == "hours":
        return round(value, 1)
    return int(value)


def metrics_table(data: Mapping[str, Any]) -> Table:
    table = Table("metrics", _("Metrics"), [
        _("Metric"), _("Value"), _("Numerator"), _("Denominator"), _("Previous period"), _("Change"), _("Unit"),
    ])
    for row in data["rows"]:
        metric = row["metric"]
        unit = "%" if metric.kind == "rate" else _("working hours") if metric.kind == "hours" else _("cases")
        delta = row["delta"]
        table.rows.append([
            str(metric.label), _figure(metric, row["value"]), int(row["numerator"]),
            int(row["denominator"]) if row["denominator"] is not None else None,
            _figure(metric, row["previous"]),
            (round(delta * 100, 1) if metric.kind == "rate" else round(delta, 1)) if delta is not None else None,
            unit,
        ])
    return table


def volume_table(data: Mapping[str, Any]) -> Table:
    levels = [*m.levels(), "—"]
    table = Table("volume", _("Reported cases by source and class"), [_("Source"), *levels, _("Total")])
    for source, by_level in sorted(data["volume"].items()):
        counts_row = [by_level.get(level, 0) for level in levels]
        table.rows.append([source_label(source), *counts_row, sum(counts_row)])
    return table


def hours_table(data: Mapping[str, Any]) -> Table:
    table = Table("hours", _("Handling time by class (working hours)"), [_("Class"), _("Closed"), _("Mean"), _("p90")])
    for row in data["hours"]:
        table.rows.append([row["level"], row["n"], _round(row["mean"]), _round(row["p90"])])
    return table


def trend_table(data: Mapping[str, Any]) -> Table:
    table = Table("trend", _("Last six months"), [_("Month"), _("Reported"), _("Closed"), _("On-time closing rate") + " %"])
    for row in data["trend"]:
        table.rows.append([row["period"], row["reported"], row["closed"], _pct(row["ontime_closing_rate"])])
    return table


def ranking_table(key: str, title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(key, title, [
        _("Rank"), _("Name"), _("Code"), _("Reported"), _("Closed"), _("Red lights"),
        str(m.METRICS_BY_KEY["ontime_closing_rate"].label) + " %", str(m.METRICS_BY_KEY["closing_rate"].label) + " %",
        str(m.METRICS_BY_KEY["ontime_handling_rate"].label) + " %", str(m.METRICS_BY_KEY["satisfaction_rate"].label) + " %",
        str(m.METRICS_BY_KEY["mean_hours"].label),
    ])
    for row in rows:
        table.rows.append([
            row["rank"], row["name"], row["code"], row["reported"], row["closed"], row["red"],
            _pct(row["ontime_closing_rate"]), _pct(row["closing_rate"]), _pct(row["ontime_handling_rate"]),
            _pct(row["satisfaction_rate"]), _round(row["mean_hours"]),
        ])
    return table


def grid_table(rows: list[dict[str, Any]]) -> Table:
    table = Table("grids", _("Open and overdue work by grid"), [_("Grid"), _("Code"), _("Level"), _("Open work items"), _("Overdue"), _("Overdue share") + " %"])
    for row in rows:
        node = row["node"]
        share = row["overdue"] / row["open"] if row["open"] else None
        table.rows.append([node.name, node.code, node.level, row["open"], row["overdue"], _pct(share)])
    return table


def _round(value: float | None) -> float | None:
    return round(value, 1) if value is not None else None


SOURCE_LABELS = {
    "grid_patrol": lambda: _("Grid patrol"), "resident": lambda: _("Resident"), "hotline": lambda: _("Hotline"),
    "video": lambda: _("Video"), "other": lambda: _("Other"),
}


def source_label(source: str) -> str:
    label = SOURCE_LABELS.get(source)
    return label() if label else source


EXPORTABLE = ("metrics", "volume", "hours", "trend", "communities", "departments", "grids")


def table_for_export(user: User, filters: Filters, key: str) -> Table:
    if key not in EXPORTABLE:
        raise NotFound(f"no table {key!r}")
    if key == "metrics":
        return metrics_table(overview(user, filters, parts=("metrics",)))
    if key == "volume":
        return volume_table({"volume": volume(user, filters)})
    if key == "hours":
        return hours_table({"hours": handling_hours(user, filters)})
    if key == "trend":
        return trend_table({"trend": trend(user, filters)})
    if key in ("communities", "departments"):
        ranked = rankings(user, filters)
        title = _("Communities") if key == "communities" else _("Departments")
        return ranking_table(key, title, ranked[key])
    return grid_table(grid_tree(user, filters))


def to_csv(table: Table) -> bytes:
    """UTF-8 with a byte-order mark, so spreadsheet programs read the Chinese correctly."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(table.columns)
    for row in table.rows:
        writer.writerow(["" if value is None else value for value in row])
    return ("\ufeff" + buffer.getvalue()).encode("utf-8")


def to_xlsx(table: Table, subtitle: str) -> bytes:
    from openpyxl import Workbook
    from openpyxl.styles import Font

    book = Workbook()
    sheet = book.active
    sheet.title = table.key[:31]
    sheet.append([table.title])
    sheet["A1"].font = Font(bold=True)
    sheet.append([subtitle])
    sheet.append(table.columns)
    for cell in sheet[3]:
        cell.font = Font(bold=True)
    for row in table.rows:
        sheet.append(row)
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()
