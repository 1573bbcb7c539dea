"""Per-process runtime objects: the engine, the role catalogue and parsed definitions.

Parsing BPMN costs milliseconds, so a stored process version is parsed once per
process and cached by content hash (versions are immutable, so the cache never
goes stale). Nothing here holds case state between requests.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Mapping

from flask import current_app

from workflows.calendar import BusinessCalendar
from workflows.clock import utcnow
from workflows.definitions import ProcessDefinition, load_definition
from workflows.engine import Engine
from workflows.roles import RoleCatalogue


@dataclass
class Runtime:
    roles: RoleCatalogue
    engine: Engine
    calendar: BusinessCalendar = field(default_factory=BusinessCalendar.default)
    _definitions: dict[tuple[str, str], ProcessDefinition] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> "Runtime":
        roles = RoleCatalogue.from_file(config["ROLES_FILE"])
        calendar_file = config.get("CALENDAR_FILE")
        calendar = BusinessCalendar.from_file(calendar_file) if calendar_file else BusinessCalendar.default()
        # Tell administrators at start-up (logged, and kept in calendar.warnings), not only
        # when a deadline first lands in a year without holiday data.
        this_year = utcnow().year
        calendar.check_years((this_year, this_year + 1))
        return cls(roles=roles, engine=Engine(roles, calendar=calendar), calendar=calendar)

    def definition(self, process_id: str, content_hash: str, files_loader) -> ProcessDefinition:
        """The parsed definition of a stored version; ``files_loader()`` gives its files on a miss."""
        key = (process_id, content_hash)
        cached = self._definitions.get(key)
        if cached is not None:
            return cached
        definition = load_definition(files_loader(), process_id, self.roles)
        with self._lock:
            return self._definitions.setdefault(key, definition)

    def remember(self, definition: ProcessDefinition) -> None:
        with self._lock:
            self._definitions.setdefault((definition.process_id, definition.content_hash), definition)


def runtime() -> Runtime:
    return current_app.extensions["gridcase"]
