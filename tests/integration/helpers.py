"""Helpers for driving the API like an integration or a handler would."""
from __future__ import annotations

from typing import Any

from tests.grid_quick_data import (  # noqa: F401 - re-exported for the API tests
    CLOSE, HANDLE, REGISTER, REINSPECT, REVIEW_DISPATCH, REVIEW_SELF, SUPERVISE,
)

# task id -> (who does it, data)
SELF_PATH = [
    ("register", "member", REGISTER),
    ("review", "community", REVIEW_SELF),
    ("community_handle", "community", HANDLE),
    ("reinspect", "member", REINSPECT),
    ("close", "chief", CLOSE),
]
DISPATCH_PATH = [
    ("register", "member", REGISTER),
    ("review", "community", REVIEW_DISPATCH),
    ("department_handle", "department", HANDLE),
    ("reinspect", "member", REINSPECT),
    ("close", "chief", CLOSE),
]


def call(client, world, method: str, url: str, user: str | None = "admin", **kwargs) -> Any:
    headers = kwargs.pop("headers", {})
    if user is not None:
        headers.update(world.auth(user))
    return client.open(url, method=method, headers=headers, **kwargs)


def start_case(client, world, *, grid="S-C1-G1", user="member", title="垃圾堆放", data=None):
    response = call(
        client, world, "POST", "/api/cases", user,
        json={"process_id": "grid_quick", "title": title, "grid": grid, "data": data or {}},
    )
    assert response.status_code == 201, response.get_json()
    return response.get_json()


def open_item(client, world, reference: str, task: str, user: str = "admin") -> dict:
    response = call(client, world, "GET", f"/api/work-items?case={reference}", user)
    assert response.status_code == 200, response.get_json()
    items = [i for i in response.get_json()["items"] if i["task"] == task]
    assert len(items) == 1, (task, response.get_json())
    return items[0]


def complete(client, world, reference: str, task: str, user: str, data: dict, **extra):
    item = open_item(client, world, reference, task)
    return call(client, world, "POST", f"/api/work-items/{item['id']}/complete", user, json={"data": data, **extra})


def walk(client, world, reference: str, path) -> dict:
    body = None
    for task, user, data in path:
        response = complete(client, world, reference, task, user, data)
        assert response.status_code == 200, (task, response.get_json())
        body = response.get_json()
    return body
