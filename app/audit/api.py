"""Audit API: a case's verification verdict and its history bundle, for auditors (and
administrators). Read only; same scope rules as the pages (not an auditor → 403, a case
outside the auditor's grids → 404)."""
from __future__ import annotations

import marshmallow as ma
from flask import jsonify
from flask_smorest import Blueprint

from app.audit import service
from app.db import rollback
from app.people.auth import current_user, login_required
from app.runtime import runtime

blp = Blueprint("api_audit", __name__, url_prefix="/api/audit", description="Audit: verify and export case histories")


class ProblemOut(ma.Schema):
    code = ma.fields.String(metadata={"description": "hash_mismatch, broken_link, missing_event, head_mismatch, "
                                                     "unknown_version, replay_diverged, replay_failed, state_mismatch"})
    seq = ma.fields.Integer(allow_none=True, metadata={"description": "the first failing event (null: final state)"})
    kind = ma.fields.String(allow_none=True)
    message = ma.fields.String()


class VerdictOut(ma.Schema):
    reference = ma.fields.String()
    ok = ma.fields.Boolean()
    events = ma.fields.Integer()
    replayed = ma.fields.Integer(metadata={"description": "workflow steps replayed"})
    head_hash = ma.fields.String()
    problem = ma.fields.Nested(ProblemOut, allow_none=True)
    line = ma.fields.String(metadata={"description": "the line `gridcase case verify` prints"})


@blp.get("/cases/<reference>/verification")
@blp.response(200, VerdictOut)
@login_required
def verification(reference: str):
    """Verify the case now: hash chain, then replay from the pinned process version."""
    try:
        case = service.case_for_audit(current_user(), reference)
        verdict = service.verify_case(case, runtime())
        problem = verdict.problem
        return {
            "reference": verdict.reference, "ok": verdict.ok, "events": verdict.events, "replayed": verdict.replayed,
            "head_hash": case.last_event_hash, "line": verdict.line(),
            "problem": None if problem is None else {"code": problem.code, "seq": problem.seq, "kind": problem.kind,
                                                     "message": problem.message},
        }
    finally:
        rollback()


@blp.get("/cases/<reference>/bundle")
@blp.response(200)
@login_required
def bundle(reference: str):
    """The case's history bundle (verify offline with `gridcase case verify --bundle FILE`)."""
    try:
        user = current_user()
        case = service.case_for_audit(user, reference)
        return jsonify(service.export_bundle(case, runtime(), exported_by=user.username))
    finally:
        rollback()
