"""Gridcase: the Flask application factory."""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping

from flask import Flask

from app import config as config_module


def create_app(test_config: Mapping[str, Any] | None = None) -> Flask:
    instance_path = os.environ.get("GRIDCASE_INSTANCE_PATH") or str(config_module.PROJECT_ROOT / "instance")
    app = Flask(__name__, instance_path=instance_path, instance_relative_config=True)
    os.makedirs(app.instance_path, exist_ok=True)

    app.config.from_mapping(config_module.defaults(app.instance_path))
    if test_config is None:
        app.config.from_pyfile("config.py", silent=True)
        app.config.update(config_module.from_environment())
    else:
        app.config.update(config_module.from_environment())
        app.config.update(test_config)
    config_module.ensure_secret_key(app.config, app.instance_path)
    config_module.validate(app.config)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)

    from app.db import db
    from app.extensions import api, babel, csrf, login_manager, migrate
    from app.runtime import Runtime
    from app.web import register_context, select_locale

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config_module.PROJECT_ROOT / "migrations"))
    api.init_app(app)
    csrf.init_app(app)
    app.config.setdefault("BABEL_TRANSLATION_DIRECTORIES", ";".join(_translation_directories()))
    babel.init_app(app, locale_selector=select_locale)
    _init_login(app, login_manager)
    app.extensions["gridcase"] = Runtime.from_config(app.config)

    from app.errors import register_error_handlers
    from app.api import register_api
    from app.pages import register_pages
    from app.vendor import vendor

    register_api(api, csrf)
    app.register_blueprint(vendor)
    register_pages(app)
    register_context(app)
    register_error_handlers(app)

    from app.cli import register_cli

    register_cli(app)

    @app.before_request
    def _api_body_limit():
        from flask import request

        if request.path.startswith("/api"):
            request.max_content_length = app.config["API_MAX_CONTENT_LENGTH"]

    @app.teardown_appcontext
    def _drop_pending_follow_ups(exc):
        db.session.info.pop("gridcase_after_commit", None)

    return app


def _translation_directories() -> list[str]:
    """Each feature keeps its own message catalogue (app/<feature>/translations), so
    features never edit one shared file; Flask-Babel merges them."""
    root = config_module.PROJECT_ROOT / "app"
    return [str(path.relative_to(root)) for path in sorted(root.glob("**/translations")) if path.is_dir()]


def _init_login(app: Flask, login_manager) -> None:
    from flask_babel import lazy_gettext

    from app.db import db
    from app.people.models import User

    login_manager.init_app(app)
    login_manager.login_view = "people.login"
    login_manager.login_message = lazy_gettext("Please sign in to see this page.")
    login_manager.session_protection = "strong"

    @login_manager.user_loader
    def load_user(user_id: str):
        user = db.session.get(User, int(user_id)) if user_id.isdigit() else None
        return user if user is not None and user.is_active else None
