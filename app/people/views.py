"""Signing in and out (Flask-Login sessions; the API uses tokens instead)."""
from __future__ import annotations

from flask import Blueprint, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _
from flask_login import current_user, login_required, login_user, logout_user

from app.db import commit
from app.people import service as people
from app.people.forms import LoginForm

blp = Blueprint("people", __name__)

REFUSALS = {
    "bad_credentials": lambda: _("Wrong username or password."),
    "account_locked": lambda: _("Too many failed attempts: this account is locked for a while. Try again later."),
}


@blp.route("/login", methods=["GET", "POST"])
def login():
    if current_user.is_authenticated:
        return redirect(url_for("site.home"))
    form = LoginForm()
    error = None
    if form.validate_on_submit():
        try:
            user = people.sign_in(
                form.username.data.strip(), form.password.data,
                max_failures=current_app.config["LOGIN_MAX_FAILURES"],
                lockout_minutes=current_app.config["LOGIN_LOCKOUT_MINUTES"],
            )
        except people.SignInRefused as refused:
            commit()  # the failure count must stick
            error = REFUSALS[refused.message]()
        else:
            commit()
            login_user(user)
            target = request.args.get("next") or ""
            if not target.startswith("/") or target.startswith("//"):
                target = url_for("site.home")
            return redirect(target)
    status = 200 if error is None and not form.errors else 422
    return render_template("people/login.html", form=form, error=error), status


@blp.post("/logout")
@login_required
def logout():
    logout_user()
    flash(_("You have signed out."))
    return redirect(url_for("people.login"))
