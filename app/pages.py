"""Registers the server-rendered pages (every feature's `views` blueprint)."""
from flask import Flask
from flask_babel import lazy_gettext as _l


def register_pages(app: Flask) -> None:
    from app.people.views import blp as people_pages
    from app.web import site

    app.register_blueprint(site)
    app.register_blueprint(people_pages)
    for module in FEATURE_PAGES:
        _register_optional(app, module)


# Each feature's pages live in app/<feature>/views.py and expose register(app).
FEATURE_PAGES = (
    "app.work.views", "app.cases.views", "app.public.views", "app.admin.views",
    "app.notifications.views", "app.audit.views", "app.library.views", "app.dashboard.views",
    "app.disclosure.views",
)


def optional_module(module_name: str):
    """The feature module, or None when the feature has no such module."""
    import importlib

    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name and module_name.startswith(exc.name):
            return None
        raise


def _register_optional(app: Flask, module_name: str) -> None:
    module = optional_module(module_name)
    if module is not None:
        module.register(app)
