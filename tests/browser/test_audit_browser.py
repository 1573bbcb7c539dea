"""An auditor in a real browser: finds a closed case, reads that it verifies, steps back to
the third event and sees the diagram as it was then (completed / active / waiting marked),
downloads the history bundle, and the bundle verifies offline with the CLI."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.browser.conftest import login, shot
from tests.integration.test_audit_replay import play_scenario
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.browser
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def closed_case(app, with_passwords):
    from app.db import commit, db
    from app.people import service as people
    from app.people.service import _hasher

    with app.app_context():
        user = people.create_user("shenji", "何审计", None)
        user.password_hash = _hasher.hash(PASSWORD)
        people.grant_role(user, "auditor", people.grid_by_code("S"))
        commit()
        reference = play_scenario(ROOT / "bpmn" / "incident_abcd" / "scenarios" / "07_b_rework_twice_to_c.json")
        db.session.remove()
    return reference


def _classes(page, element_id: str) -> set[str]:
    return set((page.locator(f'#case-diagram .djs-element[data-element-id="{element_id}"]').first
                .get_attribute("class") or "").split())


def test_auditor_steps_back_to_the_third_event_and_the_bundle_verifies(page, live_server, closed_case, tmp_path):
    login(page, live_server, "shenji")
    page.get_by_role("link", name="审计", exact=True).click()
    page.wait_for_url("**/audit/")
    shot(page, "01-search")
    page.get_by_label("案件编号").fill(closed_case)
    page.get_by_label("状态").select_option("completed")
    page.get_by_role("button", name="查询").click()
    rows = page.locator("tr[data-reference]")
    assert rows.count() == 1
    assert "返工" in rows.first.inner_text()          # flagged as reworked
    rows.first.get_by_role("link", name=closed_case).click()

    page.wait_for_selector("#case-diagram .djs-element")
    verdict = page.locator("#verdict")
    assert verdict.get_attribute("data-verdict") == "ok"
    assert "校验通过" in verdict.inner_text()
    markers = json.loads(page.locator("#audit-markers").text_content())
    last = str(max(map(int, markers)))
    page.wait_for_function(f"document.getElementById('case-diagram').getAttribute('data-shown') === '{last}'")
    assert "gc-completed" in _classes(page, "chief_close")
    shot(page, "02-case-at-the-end")

    # Step back, one event at a time, to the third event.
    stepper = page.locator(".stepper")
    while stepper.get_attribute("data-selected") != "3":
        stepper.get_by_role("link", name="上一条").click()
    page.wait_for_function("document.getElementById('case-diagram').getAttribute('data-shown') === '3'")
    assert page.url.endswith("?seq=3#replay")
    assert "第 3 /" in page.locator(".step-position").inner_text()
    assert page.locator("#event-3").get_attribute("class").split().count("selected") == 1
    shot(page, "03-after-the-third-event")

    at3 = markers["3"]
    assert at3["completed"].get("register") == 1 and at3["completed"].get("community_accept") == 1
    for element_id in at3["completed"]:
        if page.locator(f'#case-diagram .djs-element[data-element-id="{element_id}"]').count():
            assert "gc-completed" in _classes(page, element_id), element_id
    assert at3["current"] == ["community_handle"]
    assert "gc-current" in _classes(page, "community_handle")
    for element_id in at3["waiting"]:
        assert "gc-waiting" in _classes(page, element_id), element_id
    assert at3["waiting"], "the handling task's timers were waiting"
    for later in ("chief_close", "reinspect_c", "dispatcher_review"):
        assert "gc-completed" not in _classes(page, later), later
    assert page.locator("#case-diagram .gc-count").count() == 0     # nothing done twice yet
    steps = page.locator("#audit-steps li.step")
    assert steps.filter(has_text="已完成").count() == len([i for i in at3["completed"]
                                                           if page.locator(f'#audit-steps li[data-id="{i}"]').count()])

    # Forward again to the end: the loop counts come back.
    stepper.get_by_role("link", name="最后一条").click()
    page.wait_for_function(f"document.getElementById('case-diagram').getAttribute('data-shown') === '{last}'")
    assert page.locator("#case-diagram .gc-count").count() >= 1

    # Download the bundle and verify it offline.
    with page.expect_download() as info:
        page.locator("#download-bundle").click()
    download = info.value
    assert download.suggested_filename == f"{closed_case}-history.json"
    bundle = tmp_path / download.suggested_filename
    download.save_as(str(bundle))
    environment = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    environment.update(DATABASE_URL="postgresql://nobody@127.0.0.1:1/unreachable",
                       GRIDCASE_INSTANCE_PATH=str(tmp_path / "instance"))
    result = subprocess.run([sys.executable, "-m", "flask", "--app", "app", "case", "verify", "--bundle", str(bundle)],
                            cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.startswith(f"OK {closed_case}: ")

    # The printable page.
    page.goto(f"/audit/cases/{closed_case}/print")
    shot(page, "04-printable")
    assert page.locator("h1").inner_text().startswith("案件历史")
    assert page.locator(".audit-timeline .event").count() == len(markers)
