"""Every process in the library walks its scenarios and covers every branch.

Scenario folders are discovered, so a process added to bpmn/ with a scenarios/ folder is
tested here without touching this file. The whole library is loaded once (call activities
may point across folders); each folder's scenarios then run against it.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflows.calendar import BusinessCalendar
from workflows.definitions import load_folder
from workflows.engine import Engine
from workflows.roles import RoleCatalogue
from workflows.scenarios import discover, run_suite

ROOT = Path(__file__).resolve().parents[2]
LIBRARY = ROOT / "bpmn"
GRIDCASE = [sys.executable, "-m", "flask", "--app", "app"]
SCENARIO_FOLDERS = sorted({path.parent.parent for path in discover(LIBRARY)})


@pytest.fixture(scope="module")
def library():
    roles = RoleCatalogue.from_file(LIBRARY / "roles.json")
    calendar_file = LIBRARY / "calendar.json"
    calendar = BusinessCalendar.from_file(calendar_file) if calendar_file.exists() else BusinessCalendar.default()
    result = load_folder(LIBRARY, roles)
    return {d.process_id: d for d in result.definitions}, Engine(roles, calendar=calendar), result.issues


def test_the_library_has_scenarios():
    assert LIBRARY / "grid_quick" in SCENARIO_FOLDERS


@pytest.mark.parametrize("folder", SCENARIO_FOLDERS, ids=lambda p: p.relative_to(LIBRARY).as_posix())
def test_scenarios_pass_with_full_coverage(folder, library):
    definitions, engine, issues = library
    report = run_suite(discover(folder), definitions, engine, report_untested=False)
    here = folder.relative_to(LIBRARY).as_posix() + "/"
    output = "\n".join([*(f"bpmn/{i}" for i in issues if (i.file or "").startswith(here)), *report.lines()])
    assert report.results, output
    assert report.passed, output
    assert report.coverage, output
    for coverage in report.coverage:
        assert coverage.full, output
        assert coverage.percent == 100


# -- the command ---------------------------------------------------------------------

@pytest.fixture
def env(tmp_path):
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment["GRIDCASE_INSTANCE_PATH"] = str(tmp_path / "instance")
    return environment


def gridcase(args, env):
    return subprocess.run(GRIDCASE + args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


def test_cli_runs_grid_quick_with_full_coverage(env):
    result = gridcase(["process", "test", "bpmn/grid_quick", "--require-full-coverage"], env)
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert "PASS grid_quick: 社区自行处置，按期办结 (bpmn/grid_quick/scenarios/self_handle.json)" in lines
    assert "coverage grid_quick (网格事件快速处置): 6/6 branches, end and boundary events (100%)" in lines
    assert lines[-1] == "4 scenario(s): 4 passed, 0 failed"


def test_cli_exit_codes_for_missed_branches_and_failures(env, tmp_path):
    folder = tmp_path / "grid_quick"
    shutil.copytree(LIBRARY / "grid_quick", folder, ignore=shutil.ignore_patterns("scenarios"))
    (folder / "scenarios").mkdir()
    shutil.copy(LIBRARY / "grid_quick" / "scenarios" / "self_handle.json", folder / "scenarios")

    lenient = gridcase(["process", "test", str(folder)], env)
    assert lenient.returncode == 0, lenient.stdout + lenient.stderr
    assert "coverage grid_quick (网格事件快速处置): 2/6 branches, end and boundary events (33%)" in lenient.stdout
    assert "  missed: end event 预警已记录 (end_warning)" in lenient.stdout

    strict = gridcase(["process", "test", str(folder), "--require-full-coverage"], env)
    assert strict.returncode == 1

    (folder / "scenarios" / "broken.json").write_text('{"process": "grid_quick", "start": {}}', encoding="utf-8")
    failing = gridcase(["process", "test", str(folder)], env)
    assert failing.returncode == 1
    assert (f"FAIL {folder}/scenarios/broken.json: not a valid scenario: start.at: missing: when the case starts, "
            "an ISO datetime with offset, e.g. 2026-03-02T09:00:00+08:00") in failing.stdout.splitlines()
    assert "Traceback" not in failing.stdout + failing.stderr
