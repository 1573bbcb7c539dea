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
    from app.extensions import api, migrate
    from app.runtime import Runtime

    db.init_app(app)
    migrate.init_app(app, db, directory=str(config_module.PROJECT_ROOT / "migrations"))
    api.init_app(app)
    app.extensions["gridcase"] = Runtime.from_config(app.config)

    from app.errors import register_error_handlers
    from app.api import register_api
    from app.vendor import vendor

    register_api(api)
    app.register_blueprint(vendor)
    register_error_handlers(app)

    from app.cli import register_cli

    register_cli(app)

    @app.teardown_appcontext
    def _drop_pending_follow_ups(exc):
        db.session.info.pop("gridcase_after_commit", None)

    return app
