"""Deploying process definitions as immutable versions, and reading them back."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select

from app.db import db
from app.errors import InvalidInput, NotFound
from app.processes.models import ProcessVersion, ProcessVersionFile, StoredFile
from app.runtime import Runtime
from workflows.definitions import ProcessDefinition, ValidationIssue, load_files, load_folder


@dataclass
class DeployReport:
    deployed: list[ProcessVersion] = field(default_factory=list)
    unchanged: list[ProcessVersion] = field(default_factory=list)
    issues: list[ValidationIssue] = field(default_factory=list)


def deploy_folder(path: str | Path, rt: Runtime, *, deployed_by: str | None = None, note: str | None = None) -> DeployReport:
    result = load_folder(path, rt.roles)
    prefix = _library_prefix(path)
    if prefix and not result.issues:
        # One process folder of the library (`gridcase process deploy bpmn/<process>`): name its
        # files as a whole-library deploy does (<process>/<file>), so the same content gets the
        # same content hash and is recognised as the version already deployed.
        files = {f"{prefix}/{name}": content for d in result.definitions for name, content in d.files.items()}
        result = load_files(files, rt.roles)
    return _deploy(result, rt, deployed_by, note)


def _library_prefix(path: str | Path) -> str | None:
    from flask import current_app, has_app_context

    if not has_app_context():
        return None
    root, folder = Path(current_app.config["PROCESS_LIBRARY"]).resolve(), Path(path).resolve()
    return folder.relative_to(root).as_posix() if folder != root and folder.is_relative_to(root) else None


def deploy_files(files: dict[str, bytes], rt: Runtime, *, deployed_by: str | None = None, note: str | None = None) -> DeployReport:
    return _deploy(load_files(files, rt.roles), rt, deployed_by, note)


def _deploy(result, rt: Runtime, deployed_by, note) -> DeployReport:
    report = DeployReport(issues=list(result.issues))
    if result.issues:
        # All or nothing: a library with errors deploys nothing, so that a call
        # activity never points at a half-deployed set of versions.
        return report
    for definition in result.definitions:
        existing = db.session.scalar(
            select(ProcessVersion).where(
                ProcessVersion.process_id == definition.process_id,
                ProcessVersion.content_hash == definition.content_hash,
            )
        )
        if existing is not None:
            report.unchanged.append(existing)
            continue
        report.deployed.append(_store_version(definition, deployed_by, note))
        rt.remember(definition)
    db.session.flush()
    return report


def _store_version(definition: ProcessDefinition, deployed_by, note) -> ProcessVersion:
    latest = db.session.scalar(
        select(func.max(ProcessVersion.version)).where(ProcessVersion.process_id == definition.process_id)
    )
    version = ProcessVersion(
        process_id=definition.process_id,
        version=(latest or 0) + 1,
        name=definition.name,
        content_hash=definition.content_hash,
        roles=list(definition.roles),
        deployed_by=deployed_by,
        note=note,
    )
    for filename, content in sorted(definition.files.items()):
        digest = hashlib.sha256(content).hexdigest()
        if db.session.get(StoredFile, digest) is None:
            db.session.add(StoredFile(sha256=digest, content=content, size=len(content)))
        version.files.append(ProcessVersionFile(filename=filename, sha256=digest))
    db.session.add(version)
    db.session.flush()
    return version


def latest_versions() -> list[ProcessVersion]:
    newest = (
        select(ProcessVersion.process_id, func.max(ProcessVersion.version).label("version"))
        .group_by(ProcessVersion.process_id)
        .subquery()
    )
    return list(
        db.session.scalars(
            select(ProcessVersion)
            .join(newest, (ProcessVersion.process_id == newest.c.process_id) & (ProcessVersion.version == newest.c.version))
            .order_by(ProcessVersion.process_id)
        )
    )


def versions_of(process_id: str) -> list[ProcessVersion]:
    versions = list(
        db.session.scalars(
            select(ProcessVersion).where(ProcessVersion.process_id == process_id).order_by(ProcessVersion.version.desc())
        )
    )
    if not versions:
        raise NotFound(f"no process {process_id!r} is deployed")
    return versions


def get_version(process_id: str, version: int | None = None) -> ProcessVersion:
    query = select(ProcessVersion).where(ProcessVersion.process_id == process_id)
    if version is None:
        query = query.order_by(ProcessVersion.version.desc()).limit(1)
    else:
        query = query.where(ProcessVersion.version == version)
    found = db.session.scalar(query)
    if found is None:
        what = f"version {version} of process {process_id!r}" if version else f"process {process_id!r}"
        raise InvalidInput(f"{what} is not deployed", code="unknown_process", fields={"process_id": ["unknown process"]})
    return found


def version_files(version: ProcessVersion) -> dict[str, bytes]:
    rows = db.session.execute(
        select(ProcessVersionFile.filename, StoredFile.content)
        .join(StoredFile, StoredFile.sha256 == ProcessVersionFile.sha256)
        .where(ProcessVersionFile.version_id == version.id)
    )
    return {filename: bytes(content) for filename, content in rows}


def definition_of(version: ProcessVersion, rt: Runtime) -> ProcessDefinition:
    return rt.definition(version.process_id, version.content_hash, lambda: version_files(version))
