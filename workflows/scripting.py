"""Restricted Python for BPMN scripts, conditions and timer expressions.

SpiffWorkflow's default engine is plain ``eval``/``exec``: any process file could
import ``os``. Here every script is compiled with RestrictedPython (no imports, no
``_``-prefixed names or attributes) and run with its guards, over a small set of
builtins and case-clock-aware date helpers. Timing never reads the wall clock
directly: ``now()`` is :func:`workflows.clock.current_time`, so replay reproduces it.
The business-calendar helpers (``add_working_hours``, ``add_working_days``,
``working_hours_between``, ``deadline``) are bound to the engine's
:class:`~workflows.calendar.BusinessCalendar`.
"""
from __future__ import annotations

import ast
import builtins
import functools
import operator
import re
import types
from datetime import datetime, timedelta

from RestrictedPython import compile_restricted_eval, compile_restricted_exec, safe_builtins
from RestrictedPython.Guards import (
    full_write_guard,
    guarded_iter_unpack_sequence,
    guarded_unpack_sequence,
    safer_getattr,
)
from RestrictedPython.PrintCollector import PrintCollector
from RestrictedPython.transformer import RestrictingNodeTransformer
from SpiffWorkflow.bpmn.script_engine import PythonScriptEngine
from SpiffWorkflow.bpmn.script_engine.python_environment import TaskDataEnvironment
from SpiffWorkflow.bpmn.specs.event_definitions.timer import TimerEventDefinition

from workflows.calendar import BusinessCalendar
from workflows.clock import current_time

__all__ = [
    "HELPER_NAMES",
    "RestrictedEnvironment",
    "ScriptRejected",
    "add_duration",
    "calendar_helpers",
    "check_expression",
    "check_script",
    "check_timer_expression",
    "days_between",
    "isoformat",
    "make_script_engine",
    "now",
    "parse_datetime",
    "parse_duration",
]


# --- helpers visible to scripts ----------------------------------------------

def now() -> datetime:
    """The case clock (aware UTC)."""
    return current_time()


def parse_datetime(text: str | datetime) -> datetime:
    """An aware datetime from ISO 8601 text ('Z' allowed); naive values are rejected
    because they would silently mean the server's local time."""
    if isinstance(text, datetime):
        value = text
    elif isinstance(text, str):
        try:
            value = datetime.fromisoformat(text.strip())
        except ValueError:
            raise ValueError(f"not an ISO 8601 datetime: {text!r}") from None
    else:
        raise TypeError(f"expected an ISO 8601 string or datetime, got {type(text).__name__}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"datetime {text!s} has no timezone (add e.g. 'Z' or '+08:00')")
    return value


_NUM = r"(\d+(?:[.,]\d+)?)"
_DURATION_RE = re.compile(rf"P(?:{_NUM}W)?(?:{_NUM}D)?(?:T(?:{_NUM}H)?(?:{_NUM}M)?(?:{_NUM}S)?)?")


def parse_duration(text: str) -> timedelta:
    """An ISO 8601 duration of weeks/days/hours/minutes/seconds ("PT4H", "P1DT2H").

    Years and months are refused: their length depends on the start date."""
    if not isinstance(text, str):
        raise TypeError(f"expected an ISO 8601 duration string, got {type(text).__name__}")
    upper = text.strip().upper()
    match = _DURATION_RE.fullmatch(upper)
    if match is None or not any(match.groups()) or upper.endswith("T"):
        if upper.startswith("P") and re.search(r"[YM]", upper.split("T", 1)[0]):
            raise ValueError(f"duration {text!r}: years and months are not supported; use days (e.g. 'P30D')")
        raise ValueError(f"not an ISO 8601 duration: {text!r} (examples: 'PT4H', 'P2D', 'P1DT2H')")
    weeks, days, hours, minutes, seconds = (float(g.replace(",", ".")) if g else 0.0 for g in match.groups())
    return timedelta(weeks=weeks, days=days, hours=hours, minutes=minutes, seconds=seconds)


def add_duration(dt_or_iso: str | datetime, iso_duration: str) -> datetime:
    """``dt_or_iso`` plus an ISO 8601 duration, e.g. ``add_duration(now(), "PT4H")``."""
    return parse_datetime(dt_or_iso) + parse_duration(iso_duration)


def isoformat(dt: str | datetime) -> str:
    """ISO 8601 text for an aware datetime (task data must stay JSON-friendly)."""
    return parse_datetime(dt).isoformat()


def days_between(a: str | datetime, b: str | datetime) -> float:
    """Days from ``a`` to ``b`` (negative when ``b`` is earlier)."""
    return (parse_datetime(b) - parse_datetime(a)).total_seconds() / 86400


_HELPERS = {
    "now": now,
    "parse_datetime": parse_datetime,
    "add_duration": add_duration,
    "isoformat": isoformat,
    "days_between": days_between,
    "timedelta": timedelta,
}

# Builtins on top of RestrictedPython's safe_builtins. RestrictedPython leaves out
# sorted/zip/tuple/... only because they iterate in C and bypass ``_getiter_``;
# our ``_getiter_`` is plain ``iter``, so nothing is lost by allowing them.
_EXTRA_BUILTINS = {
    name: getattr(builtins, name)
    for name in (
        "len", "min", "max", "sum", "sorted", "round", "abs", "any", "all", "range",
        "enumerate", "zip", "list", "dict", "set", "tuple", "str", "int", "float",
        "bool", "isinstance", "map", "filter", "reversed",
    )
}


def calendar_helpers(calendar: BusinessCalendar) -> dict:
    """The business-calendar helpers bound to ``calendar`` (see bpmn/README.md)."""

    def add_working_hours(dt, hours):
        """``dt`` plus ``hours`` working hours on the business calendar (aware datetime)."""
        return calendar.add_working_hours(parse_datetime(dt), hours)

    def add_working_days(dt, days):
        """``dt`` plus ``days`` working days on the business calendar (aware datetime)."""
        return calendar.add_working_days(parse_datetime(dt), days)

    def working_hours_between(a, b):
        """Working hours from ``a`` to ``b`` on the business calendar."""
        return calendar.working_hours_between(parse_datetime(a), parse_datetime(b))

    def deadline(amount, unit, start=None, fraction=1.0):
        """ISO text for a timer ``timeDate``: ``amount * fraction`` ``unit`` after ``start``
        (default ``now()``); units working_hours, working_days, hours, days, minutes."""
        return calendar.deadline(amount, unit, now() if start is None else parse_datetime(start), fraction)

    return {
        "add_working_hours": add_working_hours,
        "add_working_days": add_working_days,
        "working_hours_between": working_hours_between,
        "deadline": deadline,
    }


_CALENDAR_HELPER_NAMES = frozenset(("add_working_hours", "add_working_days", "working_hours_between", "deadline"))

HELPER_NAMES: frozenset[str] = frozenset(_HELPERS) | frozenset(_EXTRA_BUILTINS) | _CALENDAR_HELPER_NAMES


# --- guards the RestrictedPython transformer calls --------------------------

_INPLACE_OPS = {
    "+=": operator.iadd, "-=": operator.isub, "*=": operator.imul, "/=": operator.itruediv,
    "//=": operator.ifloordiv, "%=": operator.imod, "**=": operator.ipow, "@=": operator.imatmul,
    "<<=": operator.ilshift, ">>=": operator.irshift, "&=": operator.iand, "^=": operator.ixor,
    "|=": operator.ior,
}


def _inplacevar(op: str, target, value):
    return _INPLACE_OPS[op](target, value)


def _apply(func, *args, **kwargs):
    return func(*args, **kwargs)


def _getitem(obj, key):
    return obj[key]


_GUARDS = {
    "__builtins__": {**safe_builtins, **_EXTRA_BUILTINS},
    "_getattr_": safer_getattr,  # refuses "_" names, str.format, frame/code introspection
    "_getitem_": _getitem,
    "_getiter_": iter,
    "_iter_unpack_sequence_": guarded_iter_unpack_sequence,
    "_unpack_sequence_": guarded_unpack_sequence,
    "_write_": full_write_guard,  # dicts/lists written directly, anything else refused
    "_inplacevar_": _inplacevar,
    "_apply_": _apply,
    "_print_": PrintCollector,  # print() output is collected and dropped
}


# --- compilation --------------------------------------------------------------

class ScriptRejected(SyntaxError):
    """The source does not compile under the restrictions.

    A SyntaxError so SpiffWorkflow's error reporting picks up ``lineno``."""


_STATEMENT_SUFFIX = re.compile(r" at statement: .*$", re.DOTALL)
_LINE_PREFIX = re.compile(r"^Line (\d+|None): ")


def _describe(errors) -> tuple[str, int]:
    """One line for all RestrictedPython errors, and the first error's line number."""
    parts, first_line = [], 0
    for error in errors:
        error = _STATEMENT_SUFFIX.sub("", error)
        match = _LINE_PREFIX.match(error)
        if match and match.group(1) != "None":
            first_line = min(first_line or int(match.group(1)), int(match.group(1)))
            error = f"line {match.group(1)}: {error[match.end():]}"
        elif match:
            error = error[match.end():]
        parts.append(" ".join(error.split()))
    return "; ".join(parts), first_line


class _Policy(RestrictingNodeTransformer):
    """RestrictedPython compiles imports and only fails them at run time (no
    ``__import__``); refuse them at compile time so deploy-time checks catch them."""

    def visit_Import(self, node):
        self.error(node, "imports are not allowed")
        return node

    visit_ImportFrom = visit_Import


@functools.lru_cache(maxsize=2048)
def _compile(source: str, mode: str) -> tuple[types.CodeType | None, str | None, int]:
    """Compiled code (or the error) per source text: conditions run thousands of times."""
    compiler = compile_restricted_eval if mode == "eval" else compile_restricted_exec
    try:
        # '<string>' is the file name SpiffWorkflow looks for to report the failing line.
        result = compiler(source, filename="<string>", policy=_Policy)
    except (SyntaxError, ValueError) as exc:  # e.g. null bytes escape RestrictedPython's handler
        return None, f"{type(exc).__name__}: {exc}", 0
    if result.errors:
        return None, *_describe(result.errors)
    return result.code, None, 0


def _compiled(source: str, mode: str) -> types.CodeType:
    if not isinstance(source, str):
        raise TypeError(f"script must be a string, got {type(source).__name__}")
    code, error, lineno = _compile(source, mode)
    if code is None:
        lines = source.splitlines()
        text = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else None
        where = f" in {text!r}" if text else ""
        raise ScriptRejected(f"restricted Python refused the code: {error}{where}",
                             ("<string>", lineno, 0, text or "", None, None))
    return code


def check_expression(source: str) -> str | None:
    """None if ``source`` compiles as a restricted expression, else a one-line error."""
    if not isinstance(source, str):
        return f"expected a string, got {type(source).__name__}"
    return _compile(source, "eval")[1]


def check_script(source: str) -> str | None:
    """None if ``source`` compiles as a restricted script, else a one-line error."""
    if not isinstance(source, str):
        return f"expected a string, got {type(source).__name__}"
    return _compile(source, "exec")[1]


_TIMER_KINDS = ("date", "duration", "cycle")


def check_timer_expression(source: str, kind: str | None = None) -> str | None:
    """``check_expression`` plus, when the expression is a string literal, that it is a
    duration ("PT4H"), an aware datetime or a cycle ("R3/PT1H"). With ``kind``
    ('date', 'duration', 'cycle' = the BPMN timer element) only that form is accepted.
    Non-literal expressions (e.g. a variable) can only be checked at run time."""
    if kind is not None and kind not in _TIMER_KINDS:
        raise ValueError(f"kind must be one of {_TIMER_KINDS}")
    error = check_expression(source)
    if error:
        return error
    try:
        value = ast.literal_eval(source.strip())
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return None
    if not isinstance(value, str):
        return f"a timer expression must give a string, not {type(value).__name__} {value!r}"
    found = "cycle" if value.upper().startswith("R") else "duration" if value.upper().startswith("P") else "date"
    if kind is not None and found != kind:
        return f"timer {value!r} is not a {kind} (examples: {_TIMER_EXAMPLES[kind]})"
    try:
        if found == "cycle":
            parts = value.upper().split("/")
            if not re.fullmatch(r"R\d*", parts[0]) or len(parts) not in (2, 3):
                raise ValueError("expected R<n>/<duration>, e.g. 'R3/PT1H'")
            for part in parts[1:]:
                _check_timer_part(part)
            TimerEventDefinition.parse_iso_recurring_interval(value)
        else:
            _check_timer_part(value)
    except Exception as exc:  # SpiffWorkflow raises bare Exception('Invalid duration')
        return f"invalid timer {value!r}: {exc}"
    return None


_TIMER_EXAMPLES = {
    "date": "'2026-01-01T09:00:00+08:00'",
    "duration": "'PT4H', 'P2D', 'P1DT2H'",
    "cycle": "'R3/PT1H'",
}


def _check_timer_part(text: str) -> None:
    if text.upper().startswith("P"):
        # SpiffWorkflow's own parser is what runs the timer (it also accepts months).
        if not TimerEventDefinition.parse_iso_duration(text):
            raise ValueError("empty duration")
    else:
        parse_datetime(text)


# --- the environment ------------------------------------------------------------

class RestrictedEnvironment(TaskDataEnvironment):
    """TaskDataEnvironment with the same data semantics, but restricted code.

    The calendar helpers use ``calendar`` (default: :meth:`BusinessCalendar.default`)."""

    def __init__(self, environment_globals: dict | None = None, calendar: BusinessCalendar | None = None):
        self.calendar = calendar or BusinessCalendar.default()
        super().__init__({**_GUARDS, **_HELPERS, **calendar_helpers(self.calendar), **(environment_globals or {})})

    def evaluate(self, expression, context, external_context=None):
        code = _compiled(expression, "eval")
        my_globals = dict(self.globals)  # a copy, else we pollute later evaluations
        self._prepare_context(context)
        my_globals.update(external_context or {})
        my_globals.update(context)
        # Task data may shadow helpers (as in the base class) but never the guards.
        my_globals.update(_GUARDS)
        return eval(code, my_globals)

    def execute(self, script, context, external_context=None):
        self.check_for_overwrite(context, external_context or {})
        code = _compiled(script, "exec")  # before touching the task data
        my_globals = dict(self.globals)
        self._prepare_context(context)
        my_globals.update(external_context or {})
        context.update(my_globals)
        try:
            exec(code, context)
        finally:
            self._remove_globals_and_functions_from_context(context, external_context)
        return True


def make_script_engine(calendar: BusinessCalendar | None = None) -> PythonScriptEngine:
    """A script engine over :class:`RestrictedEnvironment`, its calendar helpers bound to
    ``calendar`` (default: :meth:`BusinessCalendar.default`); stateless, so shareable."""
    return PythonScriptEngine(environment=RestrictedEnvironment(calendar=calendar))
