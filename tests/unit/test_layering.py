"""Layering rules, checked on the source with ``ast``.

- ``workflows/`` is the engine layer: it knows nothing about the web, the database
  or the job queue, and never imports the application.
- Application services (``app/**/service*.py``, ``app/**/services/...``) never read
  the HTTP request: the API layer passes them plain values.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
WORKFLOWS = ROOT / "workflows"
APP = ROOT / "app"

FORBIDDEN_IN_WORKFLOWS = ("flask", "sqlalchemy", "redis", "rq", "psycopg", "app")


def python_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported_modules(path: Path) -> list[tuple[int, str]]:
    package = module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    return imports_in(path.read_text(encoding="utf-8"), package)


def imports_in(source: str, package: list[str]) -> list[tuple[int, str]]:
    """(line, absolute module name) for every import, including the names taken
    from a module (``from flask import request`` gives ``flask.request``), relative
    imports resolved against ``package``, and ``importlib.import_module("x")`` /
    ``__import__("x")`` calls with a literal name."""
    tree = ast.parse(source)
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                module = ".".join([*base, *([node.module] if node.module else [])])
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            found.extend((node.lineno, f"{module}.{alias.name}") for alias in node.names)
        elif isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant) \
                and isinstance(node.args[0].value, str):
            func = node.func
            name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
            if name in ("import_module", "__import__"):
                found.append((node.lineno, node.args[0].value))
    return found


def is_forbidden(module: str) -> bool:
    top = module.split(".")[0]
    return top in FORBIDDEN_IN_WORKFLOWS or top.startswith("flask_") or top.startswith("psycopg")


def test_the_checker_sees_what_it_must():
    # The rules below are only as good as this parser: check it on known snippets.
    def check(source: str) -> list[str]:
        return [module for _, module in imports_in(source, ["workflows"])]

    assert is_forbidden(check("import flask")[0])
    assert any(is_forbidden(m) for m in check("from flask_sqlalchemy import SQLAlchemy"))
    assert any(is_forbidden(m) for m in check("from psycopg2 import connect"))
    assert any(is_forbidden(m) for m in check("import sqlalchemy.orm as orm"))
    assert any(is_forbidden(m) for m in check("from ..app import db"))  # relative, resolved
    assert any(is_forbidden(m) for m in check("import importlib\nimportlib.import_module('redis')"))
    assert "flask.request" in check("from flask import request")
    assert not any(is_forbidden(m) for m in check("from workflows import clock\nimport rqlite_helper"))


def test_workflows_has_python_files():
    assert len(python_files(WORKFLOWS)) >= 5


@pytest.mark.parametrize("path", python_files(WORKFLOWS), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_workflows_import_no_web_database_queue_or_app(path):
    bad = [f"line {line}: {module}" for line, module in imported_modules(path) if is_forbidden(module)]
    assert not bad, f"{path.relative_to(ROOT)} imports what the engine layer must not know: {bad}"


def service_modules() -> list[Path]:
    return [
        p for p in python_files(APP)
        if "/service" in p.relative_to(ROOT).as_posix() or p.name.endswith("service.py")
    ]


def test_there_are_services_to_check():
    names = {p.relative_to(ROOT).as_posix() for p in service_modules()}
    assert "app/cases/service.py" in names and "app/work/service.py" in names


@pytest.mark.parametrize("path", service_modules(), ids=lambda p: p.relative_to(ROOT).as_posix())
def test_services_never_read_the_request(path):
    bad = [f"line {line}: {module}" for line, module in imported_modules(path) if module == "flask.request"]
    # `import flask` followed by `flask.request...` reads it too.
    tree = ast.parse(path.read_text(encoding="utf-8"))
    bad += [
        f"line {node.lineno}: flask.request"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr == "request"
        and isinstance(node.value, ast.Name) and node.value.id == "flask"
    ]
    assert not bad, f"{path.relative_to(ROOT)} reads the HTTP request: {bad}"
