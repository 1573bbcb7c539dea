"""Case history bundles: one JSON file an auditor can verify offline.

A bundle holds the case header, every event with its hashes, the files of every
process version the case ran on (with their SHA-256 and the version's content
hash), the role catalogue and business calendar the engine used, and the stored
final state. :func:`verify_bundle` needs nothing else — no database, no
configuration: it checks the files against their hashes, rebuilds the process
definitions from them and runs the same verification as ``gridcase case verify``.

Nothing here touches the database (the CLI's ``--bundle`` mode relies on it).
"""
from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Mapping

from workflows.calendar import BusinessCalendar, CalendarError
from workflows.definitions import DefinitionError, ProcessDefinition, content_hash, load_definition
from workflows.engine import Engine
from workflows.replay import (
    UNKNOWN_VERSION, CaseRecord, Problem, RecordedEvent, Replayer, Verdict,
)
from workflows.roles import RoleCatalogue

FORMAT = "gridcase-case-bundle"
FORMAT_VERSION = 1


class BundleError(Exception):
    """The file is not a readable bundle."""


def encode_file(name: str, content: bytes) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": name, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    try:
        entry["text"] = content.decode("utf-8")
    except UnicodeDecodeError:
        entry["base64"] = base64.b64encode(content).decode("ascii")
    return entry


def decode_file(entry: Mapping[str, Any]) -> bytes:
    if "text" in entry:
        return str(entry["text"]).encode("utf-8")
    return base64.b64decode(str(entry.get("base64") or ""))


def record_from_bundle(document: Mapping[str, Any]) -> CaseRecord:
    case = document["case"]
    return CaseRecord(
        reference=str(case["reference"]),
        events=tuple(RecordedEvent.from_dict(e) for e in document.get("events") or ()),
        head_seq=case.get("head_seq"),
        head_hash=case.get("head_hash"),
        state=case.get("state"),
        serializer_version=case.get("serializer_version"),
        data=case.get("data"),
        ended=(case.get("status") == "completed") if case.get("status") else None,
    )


@dataclass(frozen=True)
class BundleCheck:
    verdict: Verdict
    head_hash: str | None


def read_bundle(text: str | bytes) -> dict[str, Any]:
    try:
        document = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BundleError(f"not a JSON file: {exc}") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise BundleError(f"not a Gridcase case bundle (expected \"format\": \"{FORMAT}\")")
    if document.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"bundle format version {document.get('format_version')!r} is not {FORMAT_VERSION}")
    for key in ("case", "events", "versions", "roles"):
        if key not in document:
            raise BundleError(f"the bundle has no {key!r}")
    return document


def verify_bundle(document: Mapping[str, Any]) -> BundleCheck:
    """Verify a bundle exactly as the live verification would, from its own content."""
    try:
        record = record_from_bundle(document)
    except (KeyError, TypeError, ValueError) as exc:
        raise BundleError(f"the bundle's case or events are malformed: {type(exc).__name__}: {exc}") from None
    try:
        roles = RoleCatalogue.from_mapping(document["roles"])
        calendar_doc = document.get("calendar")
        calendar = BusinessCalendar.from_dict(calendar_doc) if calendar_doc else BusinessCalendar.default()
    except (CalendarError, AttributeError, TypeError) as exc:
        raise BundleError(f"the bundle's roles or calendar are malformed: {exc}") from None
    engine = Engine(roles, calendar=calendar)
    definitions: dict[tuple[str, str], ProcessDefinition] = {}
    problems: dict[tuple[str, str], str] = {}
    for version in document.get("versions") or ():
        key = (str(version.get("process_id")), str(version.get("content_hash")))
        files: dict[str, bytes] = {}
        for entry in version.get("files") or ():
            content = decode_file(entry)
            if hashlib.sha256(content).hexdigest() != entry.get("sha256"):
                problems[key] = f"file {entry.get('name')} does not match its sha256"
                break
            files[str(entry["name"])] = content
        else:
            if content_hash(files) != key[1]:
                problems[key] = "its files do not hash to the version's content hash"
                continue
            try:
                definitions[key] = load_definition(files, key[0], roles)
            except DefinitionError as exc:
                problems[key] = f"its files do not load: {exc}"

    def source(process_id: str, digest: str) -> ProcessDefinition | None:
        return definitions.get((process_id, digest))

    verdict = Replayer(engine, source).verify(record)
    if verdict.problem is not None and verdict.problem.code == UNKNOWN_VERSION:
        for (process_id, digest), why in problems.items():
            if digest[:12] in verdict.problem.message:
                p = verdict.problem
                verdict = Verdict(verdict.reference, Problem(p.code, f"{p.message}: {why}", p.seq, p.kind),
                                  verdict.events, verdict.replayed, verdict.snapshots)
    return BundleCheck(verdict, record.head_hash)
