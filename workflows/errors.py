"""Errors the engine facade raises. The application maps them to HTTP answers."""
from __future__ import annotations

from typing import Mapping, Sequence


class EngineError(Exception):
    """Base class: an operation was refused and the workflow was not changed."""

    code = "engine_error"


class TaskNotFound(EngineError):
    code = "task_not_found"

    def __init__(self, task_id: str):
        super().__init__(f"task {task_id} does not exist in this case")
        self.task_id = task_id


class TaskNotReady(EngineError):
    code = "task_not_ready"

    def __init__(self, task_id: str, state: str):
        super().__init__(f"task {task_id} is {state}, not a READY user task")
        self.task_id = task_id
        self.state = state


class WrongRole(EngineError):
    code = "wrong_role"

    def __init__(self, task_id: str, lane_role: str | None, acting_role: str):
        super().__init__(f"task {task_id} belongs to role {lane_role!r}, not {acting_role!r}")
        self.task_id = task_id
        self.lane_role = lane_role
        self.acting_role = acting_role


class FormInvalid(EngineError):
    code = "form_invalid"

    def __init__(self, fields: Mapping[str, Sequence[str]]):
        super().__init__("the submitted data does not match the task's form")
        self.fields = {key: list(messages) for key, messages in fields.items()}


class MessageNotAwaited(EngineError):
    code = "message_not_awaited"

    def __init__(self, name: str):
        super().__init__(f"this case is not waiting for message {name!r}")
        self.name = name


class ProcessFailed(EngineError):
    """The process definition could not continue (no gateway branch matched, a
    script failed...). The half-advanced workflow must be discarded."""

    code = "process_failed"
