"""The process owner's story, in the browser (issue 7).

冯流程 opens the ABCD process in the process library, opens a draft and, in the bpmn-js
modeler with the properties panel, changes a time limit (the A-class warning point) and
renames a task (值班长结案 → 值班长审核结案); deletes a sequence flow by mistake and sees the
validation error with the element marked; undoes it; runs the scenarios (all pass);
deploys version 2. A new case starts on version 2; a case that was running on version 1 is
migrated from the dry-run page, and `gridcase case verify` still verifies its replay.
Screenshots at every step.

Where driving the UI for real is impractical, the test selects an element through the
modeler's API (window.gridcaseEditor.modeler: selection.select) — the element is then edited
through the real properties panel — and says so at that step.
"""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from tests.browser.conftest import login, shot
from tests.web.conftest import PASSWORD

pytestmark = pytest.mark.browser

REGISTER = {
    "source": "resident", "category": "garbage_exposed", "description": "小区东门垃圾堆放",
    "location": "桂花苑2栋", "grid_id": "S-C1-G1", "verified": True,
    "photo_before": "upload/2026/before.jpg", "disposition": "file",
}


def _owner(app):
    from app.db import commit
    from app.people import service as people
    from app.people.service import _hasher

    with app.app_context():
        user = people.create_user("owner", "冯流程", None)
        user.password_hash = _hasher.hash(PASSWORD)
        people.grant_role(user, "process_owner", people.grid_by_code("S"))
        commit()


def _start_case(app, title: str) -> tuple[str, int]:
    from app.cases import service as cases
    from app.db import commit, db
    from app.runtime import runtime

    with app.app_context():
        case = cases.start_case(runtime(), process_id="incident_abcd", title=title, grid_code="S-C1-G1",
                                data={}, actor=None, at=datetime.now(timezone.utc))
        commit()
        result = case.reference, case.process_version.version
        db.session.remove()
        return result


def _select(page, element_id: str) -> None:
    """Select a diagram element by clicking it on the canvas (real UI)."""
    shape = page.locator(f'#modeler-canvas .djs-element[data-element-id="{element_id}"]').first
    shape.scroll_into_view_if_needed()
    shape.click(force=True)
    page.wait_for_function(f"document.getElementById('prop-id').textContent === '{element_id}'")


def _zoom_to(page, element_id: str) -> None:
    """Zoom the canvas onto one element so it is large enough to click (modeler API: canvas
    zoom/scroll only — the equivalent of the user scrolling and zooming with the mouse)."""
    page.evaluate("""id => {
        const m = window.gridcaseEditor.modeler, canvas = m.get('canvas');
        canvas.zoom(1.0); canvas.scrollToElement(m.get('elementRegistry').get(id), {top: 200, left: 300, right: 300, bottom: 200});
    }""", element_id)


def test_process_owner_edits_deploys_and_migrates(app, page, live_server, with_passwords):
    _owner(app)
    running, version = _start_case(app, "东门垃圾堆放（v1 上的案件）")
    assert version == 1

    login(page, live_server, "owner")
    page.goto("/library")
    shot(page, "01-library")
    page.get_by_role("link", name="事件ABCD四类分级处置").click()
    page.wait_for_selector("table.versions")
    shot(page, "02-process")
    with page.expect_navigation():
        page.locator("#open-draft").click()
    page.wait_for_selector("#lib-editor[data-ready=true]")
    shot(page, "03-editor")

    # 1. Change a time limit: the A-class warning at 75% instead of 80% of the limit.
    _zoom_to(page, "timer_a_warning")
    _select(page, "timer_a_warning")
    timer = page.locator("#prop-timer")
    assert "fraction=0.8" in timer.input_value()
    timer.fill("deadline(limit_amount, limit_unit, fraction=0.75)")
    page.locator("#prop-apply").click()
    shot(page, "04-timer-changed")

    # 2. Rename a task.
    _zoom_to(page, "chief_close")
    _select(page, "chief_close")
    page.locator("#prop-name").fill("值班长审核结案")
    page.locator("#prop-apply").click()
    shot(page, "05-task-renamed")

    # 3. Break a flow: select the flow after 登记核实 and press Delete.
    _zoom_to(page, "flow_register_done")
    _select(page, "flow_register_done")
    page.keyboard.press("Delete")
    page.locator("#validate-draft").click()
    issue = page.locator("#issues li[data-element=register]")
    issue.wait_for()
    assert "outgoing" in issue.inner_text()
    assert page.locator('#modeler-canvas .djs-element.gc-issue[data-element-id="register"]').count() == 1
    issue.click()
    page.wait_for_function("document.getElementById('prop-id').textContent === 'register'")
    shot(page, "06-validation-error")

    # 4. Fix it: undo the deletion, validate again.
    page.locator("#undo-edit").click()
    page.locator("#validate-draft").click()
    page.locator("#issues li.none").wait_for()
    page.wait_for_function("document.querySelector('#draft-changes li[data-element=chief_close][data-status=changed]') !== null"
                           " && document.querySelector('#draft-changes li[data-status=removed]') === null")
    changes = page.locator("#draft-changes li[data-status=changed]")
    assert sorted(changes.evaluate_all("els => els.map(e => e.dataset.element)")) == ["chief_close", "timer_a_warning"]
    shot(page, "07-valid-again")

    # 5. Run the scenarios.
    page.locator("#run-scenarios").click()
    summary = page.locator("#scenario-summary[data-total]")
    summary.wait_for(timeout=120_000)
    assert summary.get_attribute("data-passed") == summary.get_attribute("data-total") != "0"
    assert "100%" in page.locator("#coverage").inner_text()
    shot(page, "08-scenarios-pass")

    # 6. Deploy version 2.
    page.locator("#deploy-note").fill("A类预警提前到75%；值班长结案改名为值班长审核结案")
    with page.expect_navigation():
        page.locator("#deploy-draft").click()
    assert page.url.endswith("/library/incident_abcd/v2"), page.url
    page.wait_for_selector("#version-diagram[data-ready=true]")
    shot(page, "09-version-2")

    # 7. A new case uses version 2; the running one stays on version 1.
    new_case, new_version = _start_case(app, "新案件")
    assert new_version == 2
    page.goto("/library/incident_abcd/diff?a=1&b=2")
    assert page.locator('table.diff-table tr[data-element="chief_close"]').count() == 1
    assert page.locator('table.diff-table tr[data-element="timer_a_warning"]').count() == 1
    page.wait_for_selector("#diff-new[data-ready=true]")
    shot(page, "10-diff")

    # 8. Migrate the running case from the dry-run page.
    page.goto("/library/incident_abcd")
    with page.expect_navigation():
        page.locator('tr[data-version="1"]').get_by_role("link").last.click()
    row = page.locator(f'table.migration tr[data-reference="{running}"]')
    assert row.get_attribute("data-safe") == "yes"
    shot(page, "11-migration-preview")
    with page.expect_navigation():
        row.locator("button.migrate-one").click()
    assert running in page.locator(".flash").first.inner_text()
    shot(page, "12-migrated")

    # 9. The migrated case is on v2, its replay verifies, and it goes on working on v2.
    from sqlalchemy import select

    from app.cases import service as cases
    from app.cases.models import Case
    from app.db import commit, db
    from app.people.service import user_by_username
    from app.runtime import runtime
    from app.work.models import WorkItem

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == running))
        assert case.process_version.version == 2
        db.session.remove()
    result = app.test_cli_runner().invoke(args=["case", "verify", running])
    assert result.exit_code == 0, result.output
    with app.app_context():
        case = cases.lock_case(cases.get_case(running).id)
        item = db.session.scalar(select(WorkItem).where(WorkItem.case_id == case.id, WorkItem.spec_id == "register",
                                                        WorkItem.state == "ready"))
        cases.apply_completion(runtime(), case, item, REGISTER, actor=user_by_username("member"),
                               at=datetime.now(timezone.utc))
        commit()
        db.session.remove()
    result = app.test_cli_runner().invoke(args=["case", "verify", running])
    assert result.exit_code == 0, result.output
    page.goto(f"/cases/{running}")
    shot(page, "13-case-page")


def test_dmn_tables_and_form_files_in_the_draft(app, page, live_server, with_passwords):
    """The decision table opens in dmn-js; a form file is edited as text: invalid JSON is
    refused in place before saving, valid JSON is saved into the draft."""
    _owner(app)
    login(page, live_server, "owner")
    page.goto("/library/incident_abcd")
    with page.expect_navigation():
        page.locator("#open-draft").click()
    page.wait_for_selector("#lib-editor[data-ready=true]")

    page.locator(".lib-files a", has_text="incident_catalogue.dmn").click()
    page.wait_for_selector("#lib-editor[data-kind=dmn][data-ready=true]")
    page.wait_for_selector(".tjs-table")  # the decision table is shown
    assert page.locator(".tjs-table tbody tr").count() > 10
    shot(page, "01-decision-table")
    page.locator("#save-draft").click()  # saved unchanged through dmn-js: still valid
    page.wait_for_function("document.getElementById('editor-status').textContent === '已保存。'")
    assert page.locator("#issues li.none").count() == 1, page.locator("#issues").inner_text()
    page.locator("#run-scenarios").click()
    summary = page.locator("#scenario-summary[data-total]")
    summary.wait_for(timeout=120_000)
    assert summary.get_attribute("data-passed") == summary.get_attribute("data-total") != "0"

    page.locator(".lib-files a", has_text="register.form.json").first.click()
    page.wait_for_selector("#lib-editor[data-kind=json][data-ready=true]")
    text = page.locator("#file-text")
    original = text.input_value()
    text.fill(original.rstrip().rstrip("}"))
    page.locator("#save-draft").click()
    page.wait_for_function("document.getElementById('editor-status').textContent.indexOf('JSON') >= 0")
    shot(page, "02-invalid-json-refused")
    text.fill(original.replace('"title"', '"title"', 1))
    page.locator("#save-draft").click()
    page.wait_for_function("document.getElementById('editor-status').textContent === '已保存。'")
    shot(page, "03-form-saved")


@pytest.mark.parametrize("process", ["incident_abcd", "appeal_loop", "four_deliberations", "grid_quick"])
def test_saving_through_the_modeler_loses_nothing(app, page, live_server, with_passwords, process):
    """Open each shipped process in the modeler and save it unchanged: the draft still
    validates and means exactly what the deployed version means (no element differs)."""
    from app.db import db
    from app.library import service as library
    from app.processes import service as processes
    from app.runtime import runtime
    from workflows.diffing import diff_definitions

    _owner(app)
    login(page, live_server, "owner")
    page.goto(f"/library/{process}")
    with page.expect_navigation():
        page.locator("#open-draft").click()
    page.wait_for_selector("#lib-editor[data-kind=bpmn][data-ready=true]")
    page.locator("#save-draft").click()
    page.wait_for_function("document.getElementById('editor-status').textContent === '已保存。'")
    assert page.locator("#issues li.none").count() == 1, page.locator("#issues").inner_text()
    with app.app_context():
        draft = library.get_draft(process)
        assert draft.revision == 2
        check = library.validate_draft(draft, runtime())
        assert check.ok, check.issues
        deployed = processes.definition_of(processes.get_version(process), runtime())
        changes = diff_definitions(deployed, check.definition)
        assert changes.empty, changes.changes
        db.session.remove()
