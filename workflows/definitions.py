"""Load and validate process definitions: BPMN, DMN and form files.

One bad file never stops a load: every problem becomes a :class:`ValidationIssue`
(file, line, element id, message, code) and every executable process whose own
files are sound still becomes a :class:`ProcessDefinition`.

SpiffWorkflow's parser reports one error at a time, often without a line, and
checks nothing that only fails at run time (scripts, conditions, timers, lanes,
forms). So the XML is parsed and XSD-validated here with lxml (keeping
``sourceline``), our own checks run over the XML, and only then does the Spiff
parser build the specs.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import posixpath
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Iterable, Mapping

from lxml import etree
from SpiffWorkflow.bpmn.parser.BpmnParser import BpmnValidator
from SpiffWorkflow.bpmn.parser.ValidationException import ValidationException
from SpiffWorkflow.bpmn.specs.mixins.subworkflow_task import SubWorkflowTask
from SpiffWorkflow.dmn.parser.BpmnDmnParser import SCHEMAS as DMN_SCHEMAS
from SpiffWorkflow.spiff.parser.process import SPIFF_XSD, SpiffBpmnParser

from workflows.forms import schema_problems
from workflows.roles import RoleCatalogue

BPMN_NS = "http://www.omg.org/spec/BPMN/20100524/MODEL"
SPIFF_NS = "http://spiffworkflow.org/bpmn/schema/1.0/core"
NS = {"bpmn": BPMN_NS, "spiffworkflow": SPIFF_NS}
FORM_PROPERTY = "formJsonSchemaFilename"

ISSUE_CODES = (
    "xml_syntax", "xsd", "parse_error", "missing_start_event", "missing_called_process",
    "missing_decision", "expression_syntax", "timer_expression", "unknown_lane_role",
    "user_task_without_lane", "form_missing", "form_invalid", "duplicate_process_id",
    "no_executable_process", "unreadable_file",
)

_MAX_XSD_ERRORS = 10  # per file: after that they are mostly consequences of the first
_HUMAN_TASKS = ("userTask", "manualTask")
_SUBPROCESSES = ("subProcess", "transaction")
_EXPRESSIONS = ("conditionExpression", "loopCondition", "completionCondition", "loopCardinality", "condition")
_TIMERS = {"timeDuration": "duration", "timeDate": "date", "timeCycle": "cycle"}


# --- public types -------------------------------------------------------------

@dataclass(frozen=True)
class ValidationIssue:
    file: str | None        # relative to the loaded folder (or the name given)
    line: int | None
    element_id: str | None
    message: str
    code: str               # one of ISSUE_CODES

    def __str__(self) -> str:
        where = ":".join(str(part) for part in (self.file, self.line) if part is not None)
        return ": ".join(part for part in (where, self.element_id, self.message) if part)


@dataclass(frozen=True, eq=False)
class ProcessDefinition:
    process_id: str
    name: str                            # the process's name attribute, else its id
    content_hash: str                    # over the sorted (file name, sha256(content)) of `files`
    files: Mapping[str, bytes]           # only the files this process uses
    spec: Any                            # BpmnProcessSpec
    subprocess_specs: Mapping[str, Any]  # embedded and (transitively) called processes
    # Keyed by the form name as the user task writes it (the formJsonSchemaFilename
    # property the task spec carries), so the engine can look a task's form up
    # directly; `files` holds the form under its path relative to the folder.
    forms: Mapping[str, Mapping]
    roles: tuple[str, ...]               # roles of the lanes holding user tasks, sorted


@dataclass(frozen=True)
class LoadResult:
    definitions: tuple[ProcessDefinition, ...]  # sorted by process_id
    issues: tuple[ValidationIssue, ...]

    @property
    def ok(self) -> bool:
        return not self.issues


class DefinitionError(Exception):
    def __init__(self, issues: Iterable[ValidationIssue]):
        self.issues = tuple(issues)
        super().__init__("invalid process definition:\n" + "\n".join(f"  {issue}" for issue in self.issues))


# --- entry points -------------------------------------------------------------

def load_folder(path: str | Path, roles: RoleCatalogue) -> LoadResult:
    """Every *.bpmn, *.dmn and *.form.json below ``path`` (scenarios/ and hidden folders skipped)."""
    root = Path(path)
    if not root.is_dir():
        return LoadResult((), (ValidationIssue(str(path), None, None, "not a readable folder", "unreadable_file"),))
    files: dict[str, bytes] = {}
    unreadable: list[ValidationIssue] = []

    def report(error: OSError) -> None:
        name = str(error.filename or root)
        if Path(name).is_relative_to(root):
            name = Path(name).relative_to(root).as_posix()
        unreadable.append(ValidationIssue(name, None, None, f"cannot read: {error.strerror or error}", "unreadable_file"))

    for folder, subfolders, names in os.walk(root, onerror=report):
        subfolders[:] = sorted(d for d in subfolders if d != "scenarios" and not d.startswith("."))
        for filename in names:
            full = Path(folder, filename)
            relative = full.relative_to(root).as_posix()
            if _kind(relative) is None:
                continue
            try:
                files[relative] = full.read_bytes()
            except OSError as error:
                report(error)
    result = load_files(files, roles)
    return LoadResult(result.definitions, _sorted_issues([*unreadable, *result.issues]))


def load_files(files: Mapping[str, bytes], roles: RoleCatalogue) -> LoadResult:
    """Same as :func:`load_folder`, from file name -> content."""
    loader = _Loader(roles)
    definitions = loader.run(files)
    return LoadResult(definitions, _sorted_issues(loader.issues))


def load_definition(files: Mapping[str, bytes], process_id: str, roles: RoleCatalogue) -> ProcessDefinition:
    """Rebuild one definition (e.g. from a stored version's files) or raise DefinitionError."""
    loader = _Loader(roles)
    for definition in loader.run(files):
        if definition.process_id == process_id:
            return definition
    issues = list(_sorted_issues(loader.issues))
    proc = loader.procs.get(process_id)
    if proc is None:
        issues.append(ValidationIssue(None, None, process_id, f"process {process_id!r} is not defined in these files",
                                      "no_executable_process"))
    elif not proc.executable and not any(i.element_id == process_id for i in issues):
        issues.append(ValidationIssue(proc.file, proc.element.sourceline, process_id,
                                      f"process {process_id!r} is not executable", "no_executable_process"))
    elif not issues:  # cannot happen: a process that isn't built always has an issue somewhere
        issues.append(ValidationIssue(proc.file, proc.element.sourceline, process_id,
                                      f"process {process_id!r} could not be built", "parse_error"))
    raise DefinitionError(issues)


# --- the loader -----------------------------------------------------------------

@dataclass
class _Proc:
    """A top-level <bpmn:process> and what our checks learnt about it."""
    pid: str
    file: str
    element: Any
    executable: bool
    ok: bool = True
    calls: set[str] = field(default_factory=set)
    decisions: set[str] = field(default_factory=set)
    forms: list[tuple[str, str | None, Any]] = field(default_factory=list)  # (as written, resolved file, task)
    roles: set[str] = field(default_factory=set)


class _Parser(SpiffBpmnParser):
    def _add_processes(self, bpmn, filename=None):
        # The stock parser raises on a duplicate id half-way through a file; we
        # report duplicates ourselves, so keep the first and skip the others.
        for process in bpmn.xpath(".//bpmn:process", namespaces=self.namespaces):
            if process.get("id") not in self.process_parsers:
                self._find_dependencies(process)
                self.create_parser(process, filename)


class _Loader:
    def __init__(self, roles: RoleCatalogue):
        self.roles = roles
        self.parser = _Parser()  # no validator: we validate ourselves to report every error with its line
        self.issues: list[ValidationIssue] = []
        self.contents: dict[str, bytes] = {}
        self.trees: dict[str, Any] = {}            # file -> root element, for every file that is well-formed XML
        self.malformed: list[str] = []             # files that are not XML: whatever they define is unknown
        self.procs: dict[str, _Proc] = {}          # top-level process id -> first definition of it
        self.forms: dict[str, Mapping] = {}        # good form files
        self.form_names: set[str] = set()          # every form file, good or bad
        self.decisions: dict[str, str] = {}        # decision id -> DMN file (first one)
        self.good_decisions: set[str] = set()
        self._suppress: set[tuple[str, str]] = set()  # (file, element id) already explained by our checks
        self._ids: dict[str, dict[str, Any]] = {}

    def run(self, files: Mapping[str, bytes]) -> tuple[ProcessDefinition, ...]:
        try:
            by_kind: dict[str, list[str]] = {"form": [], "dmn": [], "bpmn": []}
            for name in sorted(files):
                kind = _kind(name)
                if kind is not None:
                    by_kind[kind].append(name)
                    content = files[name]
                    self.contents[name] = content.encode("utf-8") if isinstance(content, str) else content
            for kind, step in (("form", self._add_form), ("dmn", self._add_dmn), ("bpmn", self._add_bpmn)):
                for name in by_kind[kind]:
                    self._guard(name, step, name)
            if not by_kind["bpmn"]:
                self._issue(None, None, "no BPMN file to load", "no_executable_process")
            # Processes of files that failed the XSD are known (callers aren't told
            # "missing") but not checked further: their tree was dropped from self.trees.
            for proc in self.procs.values():
                if proc.executable and proc.file in self.trees:  # others are documentation only
                    self._guard(proc.file, self._check_process, proc)
            for proc in self.procs.values():
                # A bad DMN file is reported once, not again by every process using it.
                if proc.executable and proc.file in self.trees and proc.decisions <= self.good_decisions:
                    self._guard(proc.file, self._parse_spec, proc)
            definitions = []
            for pid in sorted(self.procs):
                if self.procs[pid].executable:
                    definition = self._guard(self.procs[pid].file, self._build, self.procs[pid])
                    if definition is not None:
                        definitions.append(definition)
            return tuple(definitions)
        except Exception as exc:  # a bug of ours must still not crash an upload
            self._issue(None, None, f"unexpected error while loading: {exc!r}", "parse_error")
            return ()

    # -- reporting --

    def _issue(self, file, element, message, code, element_id=None, line=None):
        if element is not None:
            element_id = element_id or element.get("id")
            line = line or element.sourceline
        self.issues.append(ValidationIssue(file, line, element_id, message, code))

    def _guard(self, file, step, *args):
        try:
            return step(*args)
        except Exception as exc:  # anything unforeseen in one file is that file's parse error
            self._issue(file, None, f"cannot load: {type(exc).__name__}: {exc}", "parse_error")
            if args and isinstance(args[0], _Proc):
                args[0].ok = False

    def _element(self, file, element_id):
        if file not in self._ids:
            root = self.trees.get(file)
            self._ids[file] = {} if root is None else {e.get("id"): e for e in root.iter() if e.get("id")}
        return self._ids[file].get(element_id)

    # -- reading files --

    def _parse_xml(self, name):
        parser = etree.XMLParser(resolve_entities=False, no_network=True)
        try:
            root = etree.fromstring(self.contents[name], parser)
        except etree.XMLSyntaxError as exc:
            self._issue(name, None, f"malformed XML: {exc.msg}", "xml_syntax", line=exc.lineno)
            self.malformed.append(name)
            return None
        if root.getroottree().docinfo.internalDTD is not None or root.getroottree().docinfo.doctype:
            # BPMN and DMN never need a DTD; entity declarations are how XXE and
            # "billion laughs" files attack a parser. Refuse them outright.
            self._issue(name, None, "DOCTYPE and entity declarations are not allowed in process files",
                        "xml_syntax", line=1)
            self.malformed.append(name)
            return None
        self.trees[name] = root
        return root

    def _xsd_ok(self, name, root, validator):
        if validator is None:
            return True
        validator.preprocess(root)  # what BpmnValidator.validate does before checking
        if validator.validator.validate(root):
            return True
        errors = [e for e in validator.validator.error_log if e.level >= etree.ErrorLevels.ERROR]
        for error in errors[:_MAX_XSD_ERRORS]:
            at_line = next((e for e in root.iter() if e.sourceline == error.line and e.get("id")), None)
            self._issue(name, None, _short(error.message), "xsd",
                        element_id=at_line.get("id") if at_line is not None else None, line=error.line)
        return False

    def _add_form(self, name):
        self.form_names.add(name)
        try:
            schema = json.loads(self.contents[name].decode("utf-8"))
        except UnicodeDecodeError:
            return self._issue(name, None, "form file is not UTF-8 text", "form_invalid")
        except json.JSONDecodeError as exc:
            return self._issue(name, None, f"invalid JSON: {exc.msg} (column {exc.colno})", "form_invalid",
                               line=exc.lineno)
        problems = _schema_problems(self.contents[name])
        for problem in problems:
            self._issue(name, None, problem, "form_invalid")
        if not problems:
            self.forms[name] = schema

    def _add_dmn(self, name):
        root = self._parse_xml(name)
        if root is None:
            return
        decisions = root.findall("{*}decision")
        for decision in decisions:
            first = self.decisions.setdefault(decision.get("id"), name)
            if first != name:
                self._issue(name, decision, f"decision id {decision.get('id')!r} is also defined in {first}",
                            "parse_error")
                self.good_decisions.discard(decision.get("id"))  # ambiguous: no process may use it
                return
        if not self._xsd_ok(name, root, _dmn_validator(etree.QName(root).namespace)):
            return
        if len(decisions) != 1:
            return self._issue(name, root, f"a DMN file must hold exactly one decision, found {len(decisions)}",
                               "parse_error")
        try:
            self.parser.add_dmn_xml(root, filename=name)
            self.parser.dmn_parsers[decisions[0].get("id")].parse()  # eagerly, to report errors once, here
        except Exception as exc:
            return self._spiff_issue(exc, name, root)
        self.good_decisions.add(decisions[0].get("id"))

    def _add_bpmn(self, name):
        root = self._parse_xml(name)
        if root is None:
            return
        ok = self._xsd_ok(name, root, _bpmn_validator())
        elements, mine = root.findall("bpmn:process", NS), []
        if ok and not any(e.get("isExecutable", "true") == "true" for e in elements):
            self._issue(name, elements[0] if elements else root, "the file defines no executable process",
                        "no_executable_process")
        for element in elements:
            pid = element.get("id")
            if pid in self.procs:
                first = self.procs[pid]
                first.ok = False  # ambiguous: neither copy becomes a definition
                self._issue(name, element, f"process id {pid!r} is already defined in {first.file} "
                                           f"(line {first.element.sourceline})", "duplicate_process_id")
                continue
            self.procs[pid] = _Proc(pid, name, element, element.get("isExecutable", "true") == "true")
            mine.append(self.procs[pid])
        if ok:
            try:
                self.parser.add_bpmn_xml(root, filename=name)
            except Exception as exc:
                self._spiff_issue(exc, name, root)
                ok = False
        for proc in mine:
            proc.ok = proc.ok and ok
        if not ok:
            del self.trees[name]  # keep ids known (so callers aren't told "missing") but skip the file

    # -- our checks, on the XML --

    def _check_process(self, proc: _Proc):
        from workflows.scripting import check_expression, check_script, check_timer_expression

        file, root = proc.file, proc.element
        issues_before = len(self.issues)
        lane_of = {ref.text.strip(): ref.getparent() for ref in root.getroottree().iter(f"{{{BPMN_NS}}}flowNodeRef")
                   if ref.text}

        def report(element, message, code, holder=None):
            # The issue names the nearest element with an id, at the line of `element`.
            holder = element if holder is None else holder
            while holder is not None and holder.get("id") is None:
                holder = holder.getparent()
            self._issue(file, holder, message, code, line=element.sourceline)
            if code in ("missing_start_event", "missing_decision", "missing_called_process"):
                self._suppress.add((file, holder.get("id")))  # Spiff would report the same thing again

        for element in root.iter(etree.Element):
            qname = etree.QName(element)
            if qname.namespace == SPIFF_NS and qname.localname in ("preScript", "postScript"):
                if element.text and (error := check_script(element.text)):
                    report(element, f"{qname.localname}: {error}", "expression_syntax")
                continue
            if qname.namespace != BPMN_NS:
                continue
            tag = qname.localname
            if (element is root or tag in _SUBPROCESSES) and element.find("bpmn:startEvent", NS) is None:
                report(element, f"{tag} has no start event", "missing_start_event")
            elif tag == "callActivity":
                self._check_call(proc, element, report)
            elif tag == "businessRuleTask":
                self._check_decision(proc, element, report)
            elif tag in _HUMAN_TASKS:
                self._check_human_task(proc, element, lane_of, report)
            elif tag == "lane":
                name = element.get("name")
                if not name or not name.strip():
                    report(element, "lane has no name: name it after a role (e.g. 网格员)", "unknown_lane_role")
                elif self.roles.resolve(name) is None:
                    report(element, f"lane {name!r} names no role in roles.json", "unknown_lane_role")
            elif tag == "scriptTask":
                script = element.find("bpmn:script", NS)
                if script is not None and script.text and (error := check_script(script.text)):
                    report(script, f"script: {error}", "expression_syntax")
            # Expressions are checked exactly as Spiff will hand them to the engine,
            # surrounding whitespace included.
            elif tag in _EXPRESSIONS and element.text and element.text.strip():
                if error := check_expression(element.text):
                    report(element, f"{tag}: {error}", "expression_syntax")
            elif tag in _TIMERS:
                text = element.text or ""
                error = check_timer_expression(text, kind=_TIMERS[tag]) if text.strip() else "empty timer expression"
                if error:  # reported on the event, not on its timerEventDefinition
                    report(element, f"{tag}: {error}", "timer_expression", holder=element.getparent().getparent())
        if len(self.issues) > issues_before:
            proc.ok = False

    def _check_call(self, proc, element, report):
        called = element.get("calledElement")
        target = self.procs.get(called)
        if not called:
            report(element, "call activity has no calledElement", "missing_called_process")
        elif target is None:
            report(element, f"calls process {called!r}, which no loaded BPMN file defines"
                            f"{self._unknown_hint('.bpmn')}", "missing_called_process")
        elif not target.executable:
            report(element, f"calls process {called!r}, which is not executable", "missing_called_process")
        else:
            proc.calls.add(called)

    def _check_decision(self, proc, element, report):
        # Spiff reads the element text unstripped, so compare it as is.
        ref = element.find("bpmn:extensionElements/spiffworkflow:calledDecisionId", NS)
        decision = ref.text if ref is not None else None
        if not decision:
            report(element, "business rule task has no spiffworkflow:calledDecisionId", "missing_decision")
        elif decision not in self.decisions:
            report(element, f"decision {decision!r} is not defined in any loaded DMN file{self._unknown_hint('.dmn')}",
                   "missing_decision")
        else:
            proc.decisions.add(decision)

    def _unknown_hint(self, suffix):
        unreadable = [name for name in self.malformed if name.endswith(suffix)]
        return f" (perhaps in {', '.join(unreadable)}, which is not well-formed XML)" if unreadable else ""

    def _check_human_task(self, proc, element, lane_of, report):
        # Spiff gives tasks inside a subprocess the subprocess's lane, if it has one.
        chain = [element]
        while chain[-1] is not proc.element:
            chain.append(chain[-1].getparent())
        lane = next((lane_of[e.get("id")] for e in reversed(chain) if e.get("id") in lane_of), None)
        if lane is None:
            report(element, "user task is in no lane: put it in the lane of the role that does it",
                   "user_task_without_lane")
        elif role := self.roles.resolve(lane.get("name")):
            proc.roles.add(role)
        for prop in element.iterfind(f"bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property"
                                     f"[@name='{FORM_PROPERTY}']", NS):
            written = prop.get("value") or ""
            resolved, problem = self._resolve_form(proc.file, written)
            if problem:
                report(prop, problem, "form_missing")
            else:
                proc.forms.append((written, resolved, element))
        self._check_time_limit(element, report)

    def _check_time_limit(self, element, report):
        """A declared time limit (timeLimit / timeLimitWarning properties, see workflows.engine)."""
        from workflows.engine import TIME_LIMIT_PROPERTY, TIME_LIMIT_WARNING_PROPERTY, parse_time_limit

        props = {p.get("name"): p for p in element.iterfind(
            "bpmn:extensionElements/spiffworkflow:properties/spiffworkflow:property", NS)}
        limit, warning = props.get(TIME_LIMIT_PROPERTY), props.get(TIME_LIMIT_WARNING_PROPERTY)
        if limit is None:
            if warning is not None:
                report(warning, f"{TIME_LIMIT_WARNING_PROPERTY} needs a {TIME_LIMIT_PROPERTY}", "time_limit_invalid")
            return
        try:
            parse_time_limit(limit.get("value"), warning.get("value") if warning is not None else None)
        except ValueError as exc:
            report(limit, str(exc), "time_limit_invalid")

    def _resolve_form(self, bpmn_file, written):
        """The form file a task names: next to its BPMN file, else the only one with that name."""
        if not written.strip():
            return None, f"{FORM_PROPERTY} is empty"
        beside = posixpath.normpath(posixpath.join(posixpath.dirname(bpmn_file), written))
        if beside in self.form_names:
            return beside, None
        matches = sorted(n for n in self.form_names if posixpath.basename(n) == posixpath.basename(written))
        if len(matches) == 1:
            return matches[0], None
        if matches:
            return None, f"form {written!r} is ambiguous: {', '.join(matches)}"
        hint = "" if written.endswith(".form.json") else " (form files must end in .form.json)"
        return None, f"form file {written!r} not found{hint}"

    # -- Spiff's own parse --

    def _parse_spec(self, proc: _Proc):
        # Spiff caches a half-built spec when get_spec fails, so each process is
        # parsed exactly once, here; embedded subprocesses belong to their process.
        todo, seen = [proc.pid], set()
        while todo:
            name = todo.pop()
            if name in seen:
                continue
            seen.add(name)
            try:
                spec = self.parser.get_spec(name)
            except Exception as exc:
                proc.ok = False
                return self._spiff_issue(exc, proc.file, proc.element)
            todo.extend(ts.spec for ts in spec.task_specs.values()
                        if isinstance(ts, SubWorkflowTask) and ts.spec not in self.procs
                        and ts.spec in self.parser.process_parsers)

    def _spiff_issue(self, exc, file, fallback):
        """An issue from a Spiff exception, with the line Spiff leaves empty."""
        if not isinstance(exc, ValidationException):
            return self._issue(file, fallback, f"{type(exc).__name__}: {exc}", "parse_error")
        file, message = exc.file_name or file, exc.args[0]
        element = self._element(file, exc.id) if exc.id else None
        if element is not None:
            if (file, exc.id) not in self._suppress:
                self._issue(file, element, message, "parse_error")
        elif exc.id:  # an element we can't find: name it, but don't guess a line
            self._issue(file, None, message, "parse_error", element_id=exc.id)
        else:
            self._issue(file, fallback, message, "parse_error")

    # -- definitions --

    def _build(self, proc: _Proc):
        closure, todo = {}, [proc.pid]
        while todo:
            pid = todo.pop()
            if pid not in closure:
                closure[pid] = self.procs[pid]
                todo.extend(closure[pid].calls)
        if not all(p.ok for p in closure.values()):
            return None
        decisions = set().union(*(p.decisions for p in closure.values()))
        if not decisions <= self.good_decisions:
            return None
        forms, form_files = {}, {}
        for p in closure.values():
            for written, resolved, task in p.forms:
                if resolved not in self.forms:
                    return None
                if forms.setdefault(written, resolved) != resolved:
                    self._issue(p.file, task, f"form {written!r} means both {forms[written]} and {resolved} "
                                              f"in process {proc.pid!r}: give the forms distinct names",
                                "form_missing")
                    return None
                form_files[written] = self.forms[resolved]
        names = {p.file for p in closure.values()} | {self.decisions[d] for d in decisions} | set(forms.values())
        files = {name: self.contents[name] for name in sorted(names)}
        spec = self.parser.get_spec(proc.pid)
        return ProcessDefinition(
            process_id=proc.pid,
            name=proc.element.get("name") or proc.pid,
            content_hash=content_hash(files),
            files=MappingProxyType(files),
            spec=spec,
            subprocess_specs=MappingProxyType(self.parser.get_subprocess_specs(proc.pid)),
            forms=MappingProxyType(form_files),
            roles=tuple(sorted(set().union(*(p.roles for p in closure.values())))),
        )


# --- helpers ---------------------------------------------------------------------

def content_hash(files: Mapping[str, bytes]) -> str:
    """sha256 over the sorted (file name, sha256(content)) pairs."""
    digest = hashlib.sha256()
    for name in sorted(files):
        digest.update(f"{name}\0{hashlib.sha256(files[name]).hexdigest()}\n".encode("utf-8"))
    return digest.hexdigest()


def _kind(name: str) -> str | None:
    parts = name.split("/")
    if "scenarios" in parts[:-1] or any(part.startswith(".") for part in parts):
        return None
    if name.endswith(".bpmn"):
        return "bpmn"
    if name.endswith(".dmn"):
        return "dmn"
    if name.endswith(".form.json"):
        return "form"
    return None


def _sorted_issues(issues: Iterable[ValidationIssue]) -> tuple[ValidationIssue, ...]:
    return tuple(sorted(set(issues), key=lambda i: (i.file or "", i.line or 0, i.element_id or "", i.code, i.message)))


def _short(message: str) -> str:
    """lxml's message with namespaces shortened: bpmn:task, spiffworkflow:x, DMN's left out."""
    message = message.replace(f"{{{BPMN_NS}}}", "bpmn:").replace(f"{{{SPIFF_NS}}}", "spiffworkflow:")
    return re.sub(r"\{[^}]*\}", "", message)


@functools.lru_cache(maxsize=512)
def _schema_problems(content: bytes) -> tuple[str, ...]:
    # Checking against the 2020-12 meta-schema costs ~2 ms a form, more than parsing
    # the BPMN; versions share most forms, so remember the verdict per content.
    return tuple(schema_problems(json.loads(content.decode("utf-8"))))


# lxml validators keep their error log on the instance: one set per thread.
_local = threading.local()


def _bpmn_validator() -> BpmnValidator:
    if not hasattr(_local, "bpmn"):
        _local.bpmn = BpmnValidator(imports={"spiffworkflow": SPIFF_XSD})
    return _local.bpmn


def _dmn_validator(namespace: str | None) -> BpmnValidator | None:
    cache = _local.__dict__.setdefault("dmn", {})
    if namespace not in cache:
        try:
            cache[namespace] = BpmnValidator(DMN_SCHEMAS[namespace]) if namespace in DMN_SCHEMAS else None
        except etree.XMLSchemaParseError:  # Spiff's bundled DMN 1.2 schema does not compile
            cache[namespace] = None
    return cache[namespace]
