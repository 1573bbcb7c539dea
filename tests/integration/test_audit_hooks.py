"""Replay applies the events other features write: an approved deadline extension moves the
timer in the replay too (CaseRun.reschedule_timer), and a case migrated to a newer process
version is migrated in the replay (workflows.migration.migrate_run) with the target version's
files — from the database, and from an exported bundle offline."""
from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from tests.integration.helpers import HANDLE, REINSPECT, CLOSE, call, open_item, walk
from tests.integration.test_extensions import ask, dispatched, fire, parse


def _verify(app, reference):
    from app.audit import service
    from app.cases.models import Case
    from app.db import db
    from app.runtime import runtime

    with app.app_context():
        case = db.session.scalar(select(Case).where(Case.reference == reference))
        verdict = service.verify_case(case, runtime())
        bundle = service.export_bundle(case, runtime())
        db.session.remove()
    return verdict, bundle


def test_extension_then_escalation_replays(app, client, world):
    from app.audit.bundle import verify_bundle

    reference, item = dispatched(client, world)
    ext = ask(client, world, item["id"], reason="需协调产权单位", working_days=3).get_json()
    response = call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "supervisor", json={})
    assert response.status_code == 200, response.get_json()
    new_due = parse(response.get_json()["new_due_at"])
    assert fire(app, new_due + timedelta(minutes=1)) == 1   # the moved deadline fires: escalation

    verdict, bundle = _verify(app, reference)
    assert verdict.ok, verdict.line()
    kinds = [e["kind"] for e in bundle["events"]]
    assert "extension_approved" in kinds and kinds[-1] == "timer_fired"
    assert verify_bundle(bundle).verdict.ok


def test_extension_replayed_at_the_wrong_time_diverges(app, client, world):
    """Had the extension not been applied, the deadline would have fired at the old time:
    the replay of the recorded new due time is what makes the later timer event match."""
    from app.audit.bundle import verify_bundle
    from workflows.replay import event_hash

    reference, item = dispatched(client, world)
    ext = ask(client, world, item["id"], reason="需协调产权单位", working_days=3).get_json()
    call(client, world, "POST", f"/api/work-items/extensions/{ext['id']}/approve", "supervisor", json={})
    new_due = parse(call(client, world, "GET", f"/api/work-items/{item['id']}", "admin").get_json()["due_at"])
    assert fire(app, new_due + timedelta(minutes=1)) == 1
    verdict, bundle = _verify(app, reference)
    assert verdict.ok, verdict.line()
    # Forge the bundle consistently: the extension's new due time moved a year later.
    from workflows.replay import RecordedEvent

    prev = "0" * 64
    for event in bundle["events"]:
        if event["kind"] == "extension_approved":
            event["payload"]["new_due_at"] = (new_due + timedelta(days=365)).isoformat()
        event["prev_hash"] = prev
        event["hash"] = event_hash(bundle["case"]["reference"], RecordedEvent.from_dict(event))
        prev = event["hash"]
    bundle["case"]["head_hash"] = prev
    check = verify_bundle(bundle)
    assert not check.verdict.ok
    assert check.verdict.problem.code == "replay_diverged", check.verdict.line()


def test_migrated_case_replays_from_the_database_and_a_bundle(app, client, world):
    from pathlib import Path

    from app.audit.bundle import verify_bundle
    from app.db import commit, db
    from app.library import service as library
    from app.people.models import User
    from app.processes import service as processes
    from app.runtime import runtime

    response = call(client, world, "POST", "/api/cases", "member",
                    json={"process_id": "grid_quick", "title": "垃圾", "grid": "S-C1-G1", "data": {}})
    reference = response.get_json()["reference"]
    folder = Path(app.config["PROCESS_LIBRARY"]) / "grid_quick"
    with app.app_context():
        files = {p.relative_to(folder).as_posix(): p.read_bytes()
                 for p in folder.rglob("*") if p.is_file() and "scenarios" not in p.parts}
        files["grid_quick.bpmn"] = files["grid_quick.bpmn"].replace('name="结案"'.encode(), 'name="值班长结案"'.encode(), 1)
        report = processes.deploy_files(files, runtime(), deployed_by="test")
        assert report.deployed and not report.issues, report.issues
        target = report.deployed[0]
        admin = db.session.scalar(select(User).where(User.username == "admin"))
        library.migrate_case(runtime(), reference, target, actor=admin)
        commit()
        db.session.remove()
    from tests.integration.helpers import REGISTER, REVIEW_SELF

    walk(client, world, reference, [("register", "member", REGISTER), ("review", "community", REVIEW_SELF),
                                    ("community_handle", "community", HANDLE), ("reinspect", "member", REINSPECT),
                                    ("close", "chief", CLOSE)])
    assert open_item  # (helpers used by walk)
    verdict, bundle = _verify(app, reference)
    assert verdict.ok, verdict.line()
    assert [e["kind"] for e in bundle["events"]][1] == "case_migrated"
    assert [v["version"] for v in bundle["versions"]] == [1, 2]
    assert verify_bundle(bundle).verdict.ok

    # Without the target version's files the replay cannot continue, and says so.
    bundle["versions"] = bundle["versions"][:1]
    check = verify_bundle(bundle)
    assert check.verdict.problem.code == "unknown_version" and check.verdict.problem.kind == "case_migrated"
