"""Registers every feature's API blueprint on the flask-smorest Api."""
from flask_smorest import Api


FEATURE_APIS = ("app.notifications.api", "app.audit.api", "app.library.api", "app.dashboard.api", "app.disclosure.api")


def register_api(api: Api, csrf) -> None:
    from app.cases.api import blp as cases
    from app.people.api import blp as people
    from app.processes.api import blp as processes
    from app.work.api import blp as work

    api.spec.components.security_scheme("bearer", {"type": "http", "scheme": "bearer"})
    api.spec.components.security_scheme("basic", {"type": "http", "scheme": "basic"})
    api.spec.options["security"] = [{"bearer": []}, {"basic": []}]
    from app.pages import optional_module

    blueprints = [processes, cases, work, people]
    # Features added later expose ``blp`` in app/<feature>/api.py.
    for name in FEATURE_APIS:
        module = optional_module(name)
        if module is not None:
            blueprints.append(module.blp)
    for blueprint in blueprints:
        csrf.exempt(blueprint)  # the API authenticates every request with a token, not a cookie
        api.register_blueprint(blueprint)
