"""Registers the server-rendered pages (every feature's `views` blueprint)."""
from flask import Flask
from flask_babel import lazy_gettext as _l


def register_pages(app: Flask) -> None:
    from app.people.views import blp as people_pages
    from app.web import site

    app.register_blueprint(site)
    app.register_blueprint(people_pages)
    for module in ("app.work.views", "app.cases.views", "app.public.views", "app.admin.views"):
        _register_optional(app, module)


def _register_optional(app: Flask, module_name: str) -> None:
    import importlib

    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return  # the feature has no pages
        raise
    module.register(app)
