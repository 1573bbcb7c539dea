"""Serves browser libraries installed from npm at setup (no CDN at run time)."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_from_directory

from app.config import PROJECT_ROOT

# Only these package folders are exposed, never node_modules as a whole.
PACKAGES = {
    "swagger-ui": PROJECT_ROOT / "node_modules" / "swagger-ui-dist",
    "bpmn-js": PROJECT_ROOT / "node_modules" / "bpmn-js" / "dist",
    "dmn-js": PROJECT_ROOT / "node_modules" / "dmn-js" / "dist",
}

vendor = Blueprint("vendor", __name__)


@vendor.get("/static/vendor/<package>/<path:filename>")
def vendor_file(package: str, filename: str):
    root: Path | None = PACKAGES.get(package)
    if root is None or not root.is_dir():
        abort(404)
    return send_from_directory(root, filename, max_age=86400)
