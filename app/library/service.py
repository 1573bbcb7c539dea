"""The process library: drafts, validation, scenarios, deployment, diffs and migration.

Services flush only; the page or API view that called them commits once. Nothing
here reads the request.

- A **draft** is one per process: its files (BPMN, DMN, forms, scenarios) stored by
  content hash like deployed versions. Opening a draft copies the newest version's
  files and the scenario files of ``PROCESS_LIBRARY/<process>/scenarios``.
- Every write to a draft is checked first (:func:`check_upload`): size, UTF-8, well-formed
  XML without DTD/entities, forms that are JSON, scripts and expressions that compile
  restricted. A refused file changes nothing. Other problems (a broken flow, a lane
  naming no role…) are saved and listed by :func:`validate_draft`, with the same
  validator as ``gridcase process validate``.
- **Deploying** a draft needs it valid and its scenarios passing; it stores a new
  immutable version (app.processes.service.deploy_files) and removes the draft.
- **Migration** moves running cases to a newer version when workflows.migration says
  it is safe; each move is a ``case_migrated`` event through the normal case step.
"""
from __future__ import annotations

import hashlib
import json
import posixpath
import re
import tempfile
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Mapping

from flask import current_app
from sqlalchemy import func, select

from app.cases.models import CASE_ACTIVE, Case
from app.db import db
from app.errors import Conflict, InvalidInput, NotFound
from app.library.lint import flow_issues
from app.library.models import ProcessDraft, ProcessScenarioSet
from app.processes import service as processes
from app.processes.models import ProcessVersion, StoredFile
from app.runtime import Runtime
from app.timeutil import utcnow
from workflows.definitions import ProcessDefinition, ValidationIssue, load_files
from workflows.diffing import DefinitionDiff, diff_definitions
from workflows.migration import MigrationResult, migrate_run
from workflows.scenarios import SuiteReport, run_suite

MAX_FILE_BYTES = 2 * 1024 * 1024           # one process file
MAX_UPLOAD_BYTES = 12 * 1024 * 1024        # one upload request (several files)
EDITABLE_SUFFIXES = (".bpmn", ".dmn", ".form.json")
SCENARIO_FOLDER = "scenarios/"
REFUSED_CODES = ("xml_syntax", "expression_syntax", "form_invalid", "unreadable_file")


# -- reading --------------------------------------------------------------------
@dataclass
class VersionRow:
    version: ProcessVersion
    active_cases: int
    completed_cases: int
    changes: DefinitionDiff | None      # vs the previous version (None for the first)
    error: str | None = None


@dataclass
class ProcessRow:
    process_id: str
    name: str
    latest: ProcessVersion
    versions: int
    active_cases: int
    draft: ProcessDraft | None


def overview() -> list[ProcessRow]:
    counts = dict(db.session.execute(
        select(ProcessVersion.process_id, func.count()).group_by(ProcessVersion.process_id)).all())
    active = dict(db.session.execute(
        select(ProcessVersion.process_id, func.count(Case.id))
        .join(Case, Case.process_version_id == ProcessVersion.id)
        .where(Case.status == CASE_ACTIVE).group_by(ProcessVersion.process_id)).all())
    drafts = {d.process_id: d for d in db.session.scalars(select(ProcessDraft))}
    return [ProcessRow(v.process_id, v.name, v, counts.get(v.process_id, 0), active.get(v.process_id, 0),
                       drafts.get(v.process_id)) for v in processes.latest_versions()]


def version_rows(process_id: str, rt: Runtime) -> list[VersionRow]:
    versions = processes.versions_of(process_id)  # newest first; NotFound when none
    by_status: dict[tuple[int, str], int] = {
        (vid, status): n for vid, status, n in db.session.execute(
            select(Case.process_version_id, Case.status, func.count())
            .where(Case.process_version_id.in_([v.id for v in versions]))
            .group_by(Case.process_version_id, Case.status))
    }
    rows = []
    for index, version in enumerate(versions):
        previous = versions[index + 1] if index + 1 < len(versions) else None
        changes, error = None, None
        if previous is not None:
            try:
                changes = diff_definitions(processes.definition_of(previous, rt), processes.definition_of(version, rt))
            except Exception as exc:  # noqa: BLE001 - an old version that no longer loads is shown, not fatal
                error = f"{type(exc).__name__}: {exc}"
        active = by_status.get((version.id, CASE_ACTIVE), 0)
        total = sum(n for (vid, _), n in by_status.items() if vid == version.id)
        rows.append(VersionRow(version, active, total - active, changes, error))
    return rows


def cases_on(version: ProcessVersion, *, active_only: bool = True, limit: int = 200) -> list[Case]:
    query = select(Case).where(Case.process_version_id == version.id)
    if active_only:
        query = query.where(Case.status == CASE_ACTIVE)
    return list(db.session.scalars(query.order_by(Case.created_at.desc()).limit(limit)))


def main_bpmn(files: Mapping[str, bytes], process_id: str) -> str | None:
    """The name of the BPMN file that defines ``process_id`` (else the first BPMN file)."""
    bpmn = sorted(name for name in files if name.endswith(".bpmn"))
    pattern = re.compile(rb'<(?:\w+:)?process\b[^>]*\bid="' + re.escape(process_id.encode()) + rb'"')
    for name in bpmn:
        if pattern.search(files[name]):
            return name
    return bpmn[0] if bpmn else None


def version_diff(process_id: str, a: int, b: int, rt: Runtime) -> tuple[ProcessVersion, ProcessVersion, DefinitionDiff]:
    old, new = processes.get_version(process_id, a), processes.get_version(process_id, b)
    return old, new, diff_definitions(processes.definition_of(old, rt), processes.definition_of(new, rt))


# -- drafts -----------------------------------------------------------------------
def get_draft(process_id: str) -> ProcessDraft | None:
    return db.session.scalar(select(ProcessDraft).where(ProcessDraft.process_id == process_id))


def draft_or_404(process_id: str) -> ProcessDraft:
    draft = get_draft(process_id)
    if draft is None:
        raise NotFound(f"process {process_id!r} has no draft; open one first")
    return draft


def open_draft(process_id: str, *, username: str) -> ProcessDraft:
    """The process's draft, created from its newest version (and the library's scenarios)."""
    draft = get_draft(process_id)
    if draft is not None:
        return draft
    version = processes.get_version(process_id)
    files = dict(processes.version_files(version))
    scenarios = Path(current_app.config["PROCESS_LIBRARY"]) / process_id / "scenarios"
    if scenarios.is_dir():
        for path in sorted(scenarios.glob("*.json")):
            files[SCENARIO_FOLDER + path.name] = path.read_bytes()
    hashes = _store(files)
    kept = db.session.get(ProcessScenarioSet, process_id)
    if kept is not None:  # scenarios written in the browser and deployed with an earlier draft
        hashes.update(kept.files or {})
    now = utcnow()
    draft = ProcessDraft(process_id=process_id, base_version_id=version.id, files=hashes,
                         created_by=username, created_at=now, updated_by=username, updated_at=now, revision=1)
    db.session.add(draft)
    db.session.flush()
    return draft


def draft_files(draft: ProcessDraft) -> dict[str, bytes]:
    hashes = dict(draft.files or {})
    if not hashes:
        return {}
    rows = db.session.execute(select(StoredFile.sha256, StoredFile.content).where(StoredFile.sha256.in_(set(hashes.values()))))
    content = {sha: bytes(data) for sha, data in rows}
    return {name: content[sha] for name, sha in sorted(hashes.items()) if sha in content}


def check_filename(name: str) -> str:
    """A safe relative file name for a draft, or InvalidInput."""
    clean = (name or "").replace("\\", "/").strip().lstrip("/")
    parts = clean.split("/")
    ok_kind = clean.endswith(EDITABLE_SUFFIXES) or (
        clean.startswith(SCENARIO_FOLDER) and clean.endswith(".json") and len(parts) == 2)
    if (not clean or not ok_kind or any(p in ("", ".", "..") or p.startswith(".") for p in parts)
            or len(clean) > 200):
        raise InvalidInput(f"{name or 'a file'}: only .bpmn, .dmn, .form.json files and scenarios/*.json can be "
                           "stored", code="unsupported_file", fields={"files": [f"{name}: unsupported file name"]})
    return clean


def check_upload(draft_files_now: Mapping[str, bytes], uploads: Mapping[str, bytes], rt: Runtime, *,
                 strict: bool = True) -> list[ValidationIssue]:
    """Refuse hostile or unreadable files (InvalidInput, nothing changes); otherwise the
    validation issues of the draft as it would be with ``uploads`` (saved anyway)."""
    problems: dict[str, list[str]] = {}
    for name, content in uploads.items():
        if len(content) > MAX_FILE_BYTES:
            problems.setdefault(name, []).append(
                f"the file is {len(content):,} bytes; a process file may have at most {MAX_FILE_BYTES:,} bytes")
            continue
        try:
            text = content.decode("utf-8")
        except UnicodeDecodeError:
            problems.setdefault(name, []).append("the file is not UTF-8 text")
            continue
        if "\x00" in text:
            problems.setdefault(name, []).append("the file contains NUL characters: it is not a text file")
        elif name.startswith(SCENARIO_FOLDER):
            try:
                json.loads(text)
            except json.JSONDecodeError as exc:
                problems.setdefault(name, []).append(f"invalid JSON at line {exc.lineno}: {exc.msg}")
    if problems:
        raise InvalidInput("the files were refused; nothing was changed", code="file_refused", fields=problems)
    merged = {**draft_files_now, **uploads}
    result = load_files({n: c for n, c in merged.items() if not n.startswith(SCENARIO_FOLDER)}, rt.roles)
    for issue in result.issues:
        if issue.file in uploads and (issue.code in REFUSED_CODES if strict else issue.code == "xml_syntax"):
            where = f"line {issue.line}: " if issue.line else ""
            element = f"{issue.element_id}: " if issue.element_id else ""
            problems.setdefault(issue.file, []).append(f"{where}{element}{issue.message}")
    if problems:
        raise InvalidInput("the files were refused; nothing was changed", code="file_refused", fields=problems)
    return list(result.issues) + flow_issues({n: c for n, c in merged.items() if not n.startswith(SCENARIO_FOLDER)})


def save_draft_files(process_id: str, uploads: Mapping[str, bytes], rt: Runtime, *, username: str,
                     revision: int | None = None, strict: bool = True) -> tuple[ProcessDraft, list[ValidationIssue]]:
    """Add or replace files of the draft (opened if needed). ``revision``: the draft revision
    the editor started from; a different one means someone else saved in between.
    ``strict`` (uploads): also refuse files whose scripts, expressions or form do not
    compile; the editor saves those (not strict) and lists them as validation errors, so a
    half-typed condition is never lost. Malformed XML and DTDs are always refused."""
    if not uploads:
        raise InvalidInput("no file was given", fields={"files": ["required"]})
    draft = open_draft(process_id, username=username)
    existing = dict(draft.files or {})
    clean = {_place(check_filename(name), existing, process_id): content for name, content in uploads.items()}
    if revision is not None and revision != draft.revision:
        raise Conflict(f"the draft was saved by {draft.updated_by} in the meantime (revision {draft.revision}); "
                       "reload the editor", code="draft_changed")
    issues = check_upload(draft_files(draft), clean, rt, strict=strict)
    files = dict(draft.files or {})
    files.update(_store(clean))
    _touch(draft, files, username)
    return draft, issues


def delete_draft_file(process_id: str, filename: str, *, username: str) -> ProcessDraft:
    draft = draft_or_404(process_id)
    files = dict(draft.files or {})
    if filename not in files:
        raise NotFound(f"the draft has no file {filename!r}")
    del files[filename]
    _touch(draft, files, username)
    return draft


def discard_draft(process_id: str) -> None:
    draft = draft_or_404(process_id)
    db.session.delete(draft)
    db.session.flush()


@dataclass
class DraftCheck:
    issues: list[ValidationIssue]
    definition: ProcessDefinition | None
    definitions: dict[str, ProcessDefinition] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.issues and self.definition is not None


def validate_draft(draft: ProcessDraft, rt: Runtime) -> DraftCheck:
    files = {n: c for n, c in draft_files(draft).items() if not n.startswith(SCENARIO_FOLDER)}
    result = load_files(files, rt.roles)
    definitions = {d.process_id: d for d in result.definitions}
    issues = list(result.issues) + flow_issues(files)
    definition = definitions.get(draft.process_id)
    if definition is None and not issues:
        issues.append(ValidationIssue(None, None, draft.process_id,
                                      f"the draft no longer defines process {draft.process_id!r}", "no_executable_process"))
    return DraftCheck(issues, definition, definitions)


def draft_changes(draft: ProcessDraft, rt: Runtime, check: DraftCheck | None = None) -> tuple[ProcessVersion, DefinitionDiff] | None:
    """What the draft changes against the newest deployed version (None while it does not load)."""
    check = check or validate_draft(draft, rt)
    if check.definition is None:
        return None
    latest = processes.get_version(draft.process_id)
    return latest, diff_definitions(processes.definition_of(latest, rt), check.definition)


def run_draft_scenarios(draft: ProcessDraft, rt: Runtime, check: DraftCheck | None = None) -> SuiteReport | None:
    """Run the draft's scenarios/*.json against the draft; None when it does not load."""
    check = check or validate_draft(draft, rt)
    if check.definition is None:
        return None
    scenarios = {n: c for n, c in draft_files(draft).items() if n.startswith(SCENARIO_FOLDER)}
    with tempfile.TemporaryDirectory(prefix="gridcase-scenarios-") as folder:
        paths = []
        for name, content in sorted(scenarios.items()):
            path = Path(folder, posixpath.basename(name))
            path.write_bytes(content)
            paths.append(path)
        report = run_suite(paths, check.definitions, rt.engine, report_untested=False)
    # Show file names as the draft knows them, not the temporary folder.
    return _relabel(report, folder)


def deploy_draft(process_id: str, rt: Runtime, *, username: str, note: str | None) -> ProcessVersion:
    draft = draft_or_404(process_id)
    check = validate_draft(draft, rt)
    if not check.ok:
        raise InvalidInput("the draft has validation errors; fix them before deploying", code="invalid_process",
                           fields={"_draft": [str(i) for i in check.issues]})
    report = run_draft_scenarios(draft, rt, check)
    if report is not None and not report.passed:
        failed = [r.line() for r in report.results if not r.passed]
        raise InvalidInput("a scenario fails on the draft; fix it before deploying", code="scenarios_failed",
                           fields={"_scenarios": failed})
    files = {n: c for n, c in draft_files(draft).items() if not n.startswith(SCENARIO_FOLDER)}
    deployed = processes.deploy_files(files, rt, deployed_by=username, note=note)
    if deployed.issues:  # validated above; only a race could get here
        raise InvalidInput("the draft has validation errors", code="invalid_process",
                           fields={"_draft": [str(i) for i in deployed.issues]})
    version = next((v for v in deployed.deployed if v.process_id == process_id), None)
    if version is None:
        raise Conflict("the draft is the same as a deployed version; nothing to deploy", code="unchanged")
    _keep_scenarios(draft, username)
    db.session.delete(draft)
    db.session.flush()
    return version


def _keep_scenarios(draft: ProcessDraft, username: str) -> None:
    """Remember the scenario files that differ from (or are missing in) the library folder."""
    folder = Path(current_app.config["PROCESS_LIBRARY"]) / draft.process_id / "scenarios"
    on_disk = {}
    if folder.is_dir():
        on_disk = {SCENARIO_FOLDER + p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.glob("*.json")}
    mine = {name: sha for name, sha in (draft.files or {}).items()
            if name.startswith(SCENARIO_FOLDER) and on_disk.get(name) != sha}
    kept = db.session.get(ProcessScenarioSet, draft.process_id)
    if kept is None:
        if not mine:
            return
        kept = ProcessScenarioSet(process_id=draft.process_id)
        db.session.add(kept)
    kept.files, kept.updated_by, kept.updated_at = mine, username, utcnow()


# -- migration -------------------------------------------------------------------------
@dataclass
class CaseCheck:
    case: Case
    result: MigrationResult | None
    error: str | None = None

    @property
    def safe(self) -> bool:
        return self.result is not None and self.result.safe


def preview_migration(version: ProcessVersion, target: ProcessVersion, rt: Runtime, *, limit: int = 200) -> list[CaseCheck]:
    """Dry run: for every active case on ``version``, would moving it to ``target`` be safe?"""
    _check_pair(version, target)
    from app.cases.service import load_run

    new_definition = processes.definition_of(target, rt)
    checks = []
    for case in cases_on(version, limit=limit):
        try:
            run = load_run(_with_state(case), rt)
            checks.append(CaseCheck(case, migrate_run(rt.engine, run, new_definition, at=utcnow())))
        except Exception as exc:  # noqa: BLE001 - one unreadable case is listed, not fatal
            checks.append(CaseCheck(case, None, f"{type(exc).__name__}: {exc}"))
    return checks


def migrate_case(rt: Runtime, reference: str, target: ProcessVersion, *, actor, at: datetime | None = None) -> MigrationResult:
    """Move one running case to ``target`` (same process, newer version) when safe: lock,
    load, migrate, save, re-project work items and timers, append ``case_migrated``.
    Unsafe: Conflict naming each reason, and nothing changes."""
    from app.cases import service as cases

    at = at or utcnow()
    case = cases.lock_case(cases.get_case(reference).id)
    if case.status != CASE_ACTIVE:
        raise Conflict(f"case {case.reference} is {case.status}; only running cases are migrated", code="case_closed")
    source = case.process_version
    _check_pair(source, target)
    run = cases.load_run(case, rt)
    result = migrate_run(rt.engine, run, processes.definition_of(target, rt), at=at)
    if not result.safe:
        raise Conflict(f"case {case.reference} cannot be migrated safely: " + "; ".join(str(p) for p in result.problems),
                       code="migration_unsafe", fields={"problems": [str(p) for p in result.problems]})
    moved = result.run
    case.process_version = target
    outcome = moved.outcome()
    payload = {
        "process_id": target.process_id,
        "from_version": source.version,
        "to_version": target.version,
        "content_hash": target.content_hash,
        "from_content_hash": source.content_hash,
        "check": result.summary(),
    }
    cases.apply_step(rt, case, moved, outcome, "case_migrated", payload, actor=actor, role=None, at=at)
    return result


def migrate_all(rt: Runtime, version: ProcessVersion, target: ProcessVersion, *, actor) -> tuple[list[str], list[tuple[str, str]]]:
    """Migrate every active case on ``version`` that is safe; returns (moved, [(reference, reason)])."""
    moved, skipped = [], []
    for check in preview_migration(version, target, rt, limit=10_000):
        if not check.safe:
            reason = check.error or "; ".join(str(p) for p in check.result.problems)
            skipped.append((check.case.reference, reason))
            continue
        try:
            migrate_case(rt, check.case.reference, target, actor=actor)
            moved.append(check.case.reference)
        except Conflict as exc:
            skipped.append((check.case.reference, exc.message))
    return moved, skipped


# -- internals ---------------------------------------------------------------------------
def _check_pair(source: ProcessVersion, target: ProcessVersion) -> None:
    if source.process_id != target.process_id:
        raise InvalidInput(f"version {target.version} belongs to {target.process_id!r}, not {source.process_id!r}",
                           code="wrong_process", fields={"to": ["another process"]})
    if target.version <= source.version:
        raise InvalidInput(f"cases move only to a newer version (v{source.version} → v{target.version})",
                           code="not_newer", fields={"to": ["choose a newer version"]})


def _with_state(case: Case) -> Case:
    # Case.state is deferred; reading it loads it (no lock needed for a dry run).
    case.state  # noqa: B018
    return case


def _place(name: str, existing: Mapping[str, str], process_id: str) -> str:
    """Where an uploaded file goes in the draft. Deployed files keep their path relative to
    the library (``incident_abcd/x.form.json``); an upload named ``x.form.json`` replaces
    the one file of that name, and a new file goes next to the process's BPMN file."""
    if name in existing or name.startswith(SCENARIO_FOLDER):
        return name
    same = [n for n in existing if posixpath.basename(n) == posixpath.basename(name) and not n.startswith(SCENARIO_FOLDER)]
    if len(same) == 1:
        return same[0]
    main = main_bpmn({n: b"" for n in existing if n.endswith(".bpmn")}, process_id) if existing else None
    folder = posixpath.dirname(main) if main else ""
    return posixpath.join(folder, name) if folder and "/" not in name else name


def _store(files: Mapping[str, bytes]) -> dict[str, str]:
    hashes = {}
    for name, content in files.items():
        digest = hashlib.sha256(content).hexdigest()
        if db.session.get(StoredFile, digest) is None:
            db.session.add(StoredFile(sha256=digest, content=content, size=len(content)))
            db.session.flush()
        hashes[name] = digest
    return hashes


def _touch(draft: ProcessDraft, files: dict[str, str], username: str) -> None:
    draft.files = files
    draft.updated_by = username
    draft.updated_at = utcnow()
    draft.revision = (draft.revision or 0) + 1
    db.session.flush()


def _relabel(report: SuiteReport, folder: str) -> SuiteReport:
    from dataclasses import replace

    prefix = str(Path(folder)) + "/"
    results = tuple(replace(r, file=SCENARIO_FOLDER + r.file[len(prefix):] if r.file.startswith(prefix) else r.file)
                    for r in report.results)
    return replace(report, results=results)
