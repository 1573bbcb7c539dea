"""The incident catalogue (DMN): every row reachable, no two rows overlapping, and the
register form offering exactly the catalogue's categories."""
from __future__ import annotations

import ast
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from lxml import etree

from workflows.definitions import load_folder
from workflows.engine import Engine
from workflows.roles import RoleCatalogue

ROOT = Path(__file__).resolve().parents[2]
FOLDER = ROOT / "bpmn" / "incident_abcd"
DMN = "{https://www.omg.org/spec/DMN/20191111/MODEL/}"
T0 = datetime(2026, 3, 2, 9, 0, tzinfo=timezone(timedelta(hours=8)))


def catalogue_rows() -> list[dict]:
    tree = etree.parse(str(FOLDER / "incident_catalogue.dmn"))
    table = tree.find(f".//{DMN}decisionTable")
    outputs = [o.get("name") for o in table.findall(f"{DMN}output")]
    rows = []
    for rule in table.findall(f"{DMN}rule"):
        (entry,) = rule.findall(f"{DMN}inputEntry")
        values = [ast.literal_eval(e.findtext(f"{DMN}text")) for e in rule.findall(f"{DMN}outputEntry")]
        rows.append({"id": rule.get("id"), "input": entry.findtext(f"{DMN}text"), **dict(zip(outputs, values))})
    return rows


ROWS = catalogue_rows()


def test_catalogue_is_large_and_spans_all_four_classes():
    assert len(ROWS) >= 60
    by_level = {level: sum(1 for r in ROWS if r["level"] == level) for level in "ABCD"}
    assert all(count >= 5 for count in by_level.values()), by_level
    assert {r["urgency"] for r in ROWS} == {"normal", "urgent"}
    assert {r["limit_unit"] for r in ROWS} <= {"working_hours", "working_days"}
    assert all(isinstance(r["limit_amount"], (int, float)) and r["limit_amount"] > 0 for r in ROWS)


def test_no_two_rows_overlap():
    # Each input entry must be one exact string literal; then rows overlap only if codes repeat.
    for row in ROWS:
        assert isinstance(ast.literal_eval(row["input"]), str), row
    codes = [ast.literal_eval(r["input"]) for r in ROWS]
    assert len(codes) == len(set(codes)), [c for c in codes if codes.count(c) > 1]


def test_register_form_offers_exactly_the_catalogue():
    form = json.loads((FOLDER / "register.form.json").read_text(encoding="utf-8"))
    category = form["properties"]["category"]
    codes = {ast.literal_eval(r["input"]) for r in ROWS}
    assert set(category["enum"]) == codes
    titles = category.get("x-enum-titles", {})
    assert all(titles.get(code) for code in codes), "every category needs a Chinese title"


@pytest.fixture(scope="module")
def incident():
    roles = RoleCatalogue.from_file(ROOT / "bpmn" / "roles.json")
    result = load_folder(ROOT / "bpmn", roles)
    assert not result.issues, result.issues
    definition = next(d for d in result.definitions if d.process_id == "incident_abcd")
    return Engine(roles), definition


FIRST_TASK = {"A": "grid_handle", "B": "community_accept", "C": "dispatcher_review", "D": "district_submit"}


@pytest.mark.parametrize("row", ROWS, ids=[r["id"] for r in ROWS])
def test_every_row_is_reachable_through_the_process(incident, row):
    """Registering an incident of each category classifies it with exactly that row's values
    and routes it to its class's first task."""
    engine, definition = incident
    run, outcome = engine.start(definition, {}, at=T0)
    (register,) = outcome.ready
    data = {
        "source": "grid_patrol", "category": ast.literal_eval(row["input"]), "description": "目录可达性测试",
        "location": "测试地点", "verified": True, "photo_before": "upload/test.jpg", "disposition": "file",
    }
    after = run.complete(register.task_id, data, at=T0 + timedelta(minutes=10), role="grid_member")
    for key in ("level", "urgency", "limit_amount", "limit_unit", "category_name"):
        assert after.data[key] == row[key], key
    assert [t.spec_id for t in after.ready] == [FIRST_TASK[row["level"]]]


def test_each_department_report_instance_carries_the_round_deadline(incident):
    """吹哨报到: every parallel instance of 部门报到 shows the report deadline as its due time."""
    engine, definition = incident
    scenario = json.loads((FOLDER / "scenarios" / "13_c_whistle_report_timeout_supervise.json").read_text(encoding="utf-8"))
    at = datetime.fromisoformat(scenario["start"]["at"])
    run, _ = engine.start(definition, scenario["start"].get("data", {}), at=at)
    for step in scenario["steps"]:
        if "complete" not in step:
            continue
        at += timedelta(minutes=10)
        task = next(t for t in run.ready_tasks() if t.spec_id == step["complete"])
        run.complete(task.task_id, step["data"], at=at, role=step.get("role"))
        if step["complete"] == "whistle":
            break
    reports = [t for t in run.ready_tasks() if t.spec_id == "department_report"]
    deadline = next(t for t in run.waiting_timers() if t.spec_id == "timer_report_deadline")
    assert len(reports) == 2
    assert all(t.due_at == deadline.due_at for t in reports)
