"""Administration pages (/admin/…): grid tree, people and roles, departments, API tokens,
CSV import. Administrators only: anyone else gets 403, anonymous visitors the sign-in page.

Invalid input is shown in place on the form (422) and changes nothing; a change is
committed once and answered with a flash message and a redirect. Secrets (generated
passwords, new API tokens) are shown once on the page that created them, never flashed."""
from __future__ import annotations

from flask import Blueprint, abort, current_app, flash, redirect, render_template, request, url_for
from flask_babel import gettext as _, lazy_gettext as _l
from flask_login import current_user
from werkzeug.exceptions import RequestEntityTooLarge

from app.admin import service
from app.admin.forms import (
    ConfirmForm, DepartmentForm, GridCreateForm, GridRenameForm, ImportForm, PasswordForm, RoleForm,
    TokenForm, UserCreateForm, UserEditForm,
)
from app.db import commit, rollback
from app.errors import InvalidInput
from app.people import service as people
from app.web import NavItem, add_nav

blp = Blueprint("admin", __name__, url_prefix="/admin")

IMPORT_ENDPOINTS = {"admin.import_grids", "admin.import_users"}
# The upload may be up to 2 MB; the form around it adds a little.
IMPORT_REQUEST_LIMIT = service.MAX_IMPORT_BYTES + 64 * 1024


def register(app) -> None:
    from app.admin.cli import admin_group

    app.register_blueprint(blp)
    app.cli.add_command(admin_group)
    add_nav(NavItem("admin.grids", _l("Administration"), admin_only=True))


@blp.url_value_preprocessor
def _guard(endpoint, values):
    """Runs before every other request hook (CSRF included): who may come in, and how
    large a body they may send."""
    if not current_user.is_authenticated:
        abort(current_app.login_manager.unauthorized())
    if not current_user.is_admin:
        abort(403)
    if endpoint in IMPORT_ENDPOINTS:
        request.max_content_length = IMPORT_REQUEST_LIMIT


@blp.app_template_filter("mask_phone")
def _mask_phone(phone):
    return service.mask_phone(phone)


@blp.app_template_global("level_label")
def _level_label(level):
    return service.level_label(level)


@blp.app_template_global("role_label")
def _role_label(role):
    return service.role_label(role)


def _apply_errors(form, error: InvalidInput) -> str | None:
    """Put a service's per-field messages on the form's fields; return what has no field."""
    unplaced = []
    for name, messages in error.fields.items():
        target = getattr(form, name, None)
        if target is not None and hasattr(target, "errors"):
            if not isinstance(target.errors, list):
                target.errors = list(target.errors)
            target.errors.extend(messages)
        else:
            unplaced.extend(messages)
    if not error.fields:
        unplaced.append(error.message)
    return " ".join(unplaced) or None


# -- grids ----------------------------------------------------------------------------
def _grid_form() -> GridCreateForm:
    form = GridCreateForm()
    form.parent.choices = [("", _("(top level)"))] + service.grid_choices()
    return form


@blp.route("/grids", methods=["GET", "POST"])
def grids():
    form = _grid_form()
    error = None
    if request.method == "POST":
        if form.validate_on_submit():
            parent = service.find_grid(form.parent.data) if form.parent.data else None
            if form.parent.data and parent is None:
                form.parent.errors = [_("Unknown grid.")]
            else:
                try:
                    node = service.create_grid(form.code.data, form.name.data, form.level.data, parent)
                except InvalidInput as exc:
                    rollback()
                    error = _apply_errors(form, exc)
                else:
                    commit()
                    flash(_("Grid %(code)s (%(name)s) created.", code=node.code, name=node.name))
                    return redirect(url_for("admin.grids"))
        status = 422
    else:
        form.parent.data = request.args.get("parent", "")
        status = 200
    return render_template("admin/grids.html", form=form, tree=service.grid_tree(), error=error), status


@blp.route("/grids/<int:node_id>", methods=["GET", "POST"])
def grid(node_id: int):
    node = service.grid_or_404(node_id)
    form = GridRenameForm(obj=node)
    error = None
    if request.method == "POST":
        if form.validate_on_submit():
            try:
                service.rename_grid(node, form.name.data)
            except InvalidInput as exc:
                rollback()
                error = _apply_errors(form, exc)
            else:
                commit()
                flash(_("Grid %(code)s renamed to %(name)s.", code=node.code, name=node.name))
                return redirect(url_for("admin.grids"))
        status = 422
    else:
        status = 200
    return render_template("admin/grid.html", node=node, form=form, error=error, holders=service.holders_at(node)), status


# -- users ----------------------------------------------------------------------------
def _department_choices() -> list[tuple[str, str]]:
    return [("", _("(none)"))] + [(str(d.id), f"{d.name} ({d.code})") for d in people.departments()]


def _department_from(value: str | None):
    if not value:
        return None, None
    department = next((d for d in people.departments() if str(d.id) == value), None)
    return department, (None if department is not None else _("Unknown department."))


@blp.get("/users")
def users():
    try:
        page = max(1, int(request.args.get("page", 1)))
    except ValueError:
        page = 1
    query = request.args.get("q", "").strip()
    result = service.search_users(query, page=page, page_size=current_app.config["PAGE_SIZE_DEFAULT"])
    departments = {d.id: d for d in people.departments()}
    return render_template("admin/users.html", result=result, q=query, departments=departments)


@blp.route("/users/new", methods=["GET", "POST"])
def user_new():
    form = UserCreateForm()
    form.department.choices = _department_choices()
    error = None
    if request.method == "POST":
        if form.validate_on_submit():
            department, problem = _department_from(form.department.data)
            if problem:
                form.department.errors = [problem]
            else:
                try:
                    user, generated = service.create_user(
                        form.username.data, form.display_name.data, password=form.password.data or None,
                        phone=form.phone.data, is_admin=form.is_admin.data, department=department,
                    )
                except InvalidInput as exc:
                    rollback()
                    error = _apply_errors(form, exc)
                else:
                    commit()
                    if generated:
                        return _show_secret(user, _("User %(username)s created.", username=user.username),
                                            _("Initial password"), generated)
                    flash(_("User %(username)s created.", username=user.username))
                    return redirect(url_for("admin.user", user_id=user.id))
        return render_template("admin/user_new.html", form=form, error=error), 422
    return render_template("admin/user_new.html", form=form, error=error)


def _show_secret(user, headline: str, what, secret: str):
    return render_template("admin/secret.html", user=user, headline=headline, what=what, secret=secret)


class _UserForms:
    """The forms on a person's page; a failed POST re-renders them with one form's errors."""

    def __init__(self, user, *, bound: str | None = None):
        def make(cls, prefix, **kwargs):
            if prefix == bound:
                return cls(prefix=prefix, **kwargs)
            return cls(formdata=None, prefix=prefix, **kwargs)

        self.profile = make(UserEditForm, "profile", obj=user)
        self.profile.department.choices = _department_choices()
        if bound != "profile":
            self.profile.department.data = str(user.department_id) if user.department_id else ""
        self.password = make(PasswordForm, "password")
        self.role = make(RoleForm, "role")
        self.role.role.choices = service.role_choices()
        self.role.grid.choices = service.grid_choices()
        self.token = make(TokenForm, "token")
        self.confirm = ConfirmForm(formdata=None)


def _user_page(user, forms: _UserForms, *, error: str | None = None, status: int = 200):
    roles = sorted(user.roles, key=lambda a: (a.grid_node.path, a.role))
    tokens = people.tokens_of(user)
    department = next((d for d in people.departments() if d.id == user.department_id), None)
    return render_template("admin/user.html", user=user, forms=forms, roles=roles, tokens=tokens,
                           department=department, error=error), status


@blp.get("/users/<int:user_id>")
def user(user_id: int):
    target = service.user_or_404(user_id)
    return _user_page(target, _UserForms(target))


@blp.post("/users/<int:user_id>")
def user_update(user_id: int):
    target = service.user_or_404(user_id)
    forms = _UserForms(target, bound="profile")
    form = forms.profile
    error = None
    if form.validate_on_submit():
        department, problem = _department_from(form.department.data)
        if problem:
            form.department.errors = [problem]
        else:
            try:
                service.update_user(target, display_name=form.display_name.data, phone=form.phone.data,
                                    department=department, is_admin=form.is_admin.data, acting=current_user)
            except InvalidInput as exc:
                rollback()
                error = _apply_errors(form, exc)
            else:
                commit()
                flash(_("Saved."))
                return redirect(url_for("admin.user", user_id=target.id))
    rollback()
    target = service.user_or_404(user_id)
    return _user_page(target, forms, error=error, status=422)


@blp.post("/users/<int:user_id>/active")
def user_active(user_id: int):
    target = service.user_or_404(user_id)
    form = ConfirmForm()
    active = request.form.get("active") == "1"
    if form.validate_on_submit():
        try:
            service.set_active(target, active, acting=current_user)
        except InvalidInput as exc:
            rollback()
            return _user_page(target, _UserForms(target), error=exc.message, status=422)
        commit()
        flash(_("%(username)s can sign in again.", username=target.username) if active
              else _("%(username)s is deactivated: no sign-in, no API access.", username=target.username))
    return redirect(url_for("admin.user", user_id=target.id))


@blp.post("/users/<int:user_id>/password")
def user_password(user_id: int):
    target = service.user_or_404(user_id)
    forms = _UserForms(target, bound="password")
    error = None
    if forms.password.validate_on_submit():
        try:
            generated = service.reset_password(target, forms.password.password.data or None)
        except InvalidInput as exc:
            rollback()
            error = _apply_errors(forms.password, exc)
        else:
            commit()
            if generated:
                return _show_secret(target, _("The password of %(username)s was reset.", username=target.username),
                                    _("New password"), generated)
            flash(_("The password of %(username)s was reset.", username=target.username))
            return redirect(url_for("admin.user", user_id=target.id))
    return _user_page(target, forms, error=error, status=422)


@blp.post("/users/<int:user_id>/roles")
def user_grant(user_id: int):
    target = service.user_or_404(user_id)
    forms = _UserForms(target, bound="role")
    form = forms.role
    error = None
    if form.validate_on_submit():
        grid_node = service.find_grid(form.grid.data) if form.grid.data else None
        try:
            assignment = service.grant(target, form.role.data, grid_node)
        except InvalidInput as exc:
            rollback()
            error = _apply_errors(form, exc)
        else:
            commit()
            flash(_("%(username)s is now %(role)s at %(grid)s.", username=target.username,
                    role=service.role_label(assignment.role), grid=grid_node.name))
            return redirect(url_for("admin.user", user_id=target.id))
    target = service.user_or_404(user_id)
    return _user_page(target, forms, error=error, status=422)


@blp.post("/users/<int:user_id>/roles/<int:assignment_id>/revoke")
def user_revoke(user_id: int, assignment_id: int):
    target = service.user_or_404(user_id)
    if ConfirmForm().validate_on_submit():
        assignment = service.revoke(target, assignment_id)
        commit()
        flash(_("%(username)s no longer holds %(role)s at %(grid)s.", username=target.username,
                role=service.role_label(assignment.role), grid=assignment.grid_node.name))
    return redirect(url_for("admin.user", user_id=target.id))


@blp.post("/users/<int:user_id>/tokens")
def user_token(user_id: int):
    target = service.user_or_404(user_id)
    forms = _UserForms(target, bound="token")
    error = None
    if forms.token.validate_on_submit():
        try:
            token = service.issue_token(target, forms.token.name.data)
        except InvalidInput as exc:
            rollback()
            error = _apply_errors(forms.token, exc)
        else:
            commit()
            return _show_secret(target, _("API token issued for %(username)s.", username=target.username),
                                _("API token"), token)
    return _user_page(target, forms, error=error, status=422)


@blp.post("/users/<int:user_id>/tokens/<int:token_id>/revoke")
def user_token_revoke(user_id: int, token_id: int):
    target = service.user_or_404(user_id)
    if ConfirmForm().validate_on_submit():
        token = service.revoke_token(target, token_id)
        commit()
        flash(_("Token %(name)s revoked.", name=token.name))
    return redirect(url_for("admin.user", user_id=target.id))


# -- departments -------------------------------------------------------------------------
def _department_form(**kwargs) -> DepartmentForm:
    form = DepartmentForm(**kwargs)
    form.grid.choices = [("", _("(none)"))] + service.grid_choices(service.ROOT_LEVELS)
    return form


def _grid_from(form) -> tuple[object, bool]:
    if not form.grid.data:
        return None, True
    node = service.find_grid(form.grid.data)
    if node is None:
        form.grid.errors = [_("Unknown grid.")]
        return None, False
    return node, True


@blp.route("/departments", methods=["GET", "POST"])
def departments():
    form = _department_form()
    error = None
    status = 200
    if request.method == "POST":
        if form.validate_on_submit():
            node, ok = _grid_from(form)
            if ok:
                try:
                    department = service.create_department(form.code.data, form.name.data, form.level.data, node)
                except InvalidInput as exc:
                    rollback()
                    error = _apply_errors(form, exc)
                else:
                    commit()
                    flash(_("Department %(name)s created.", name=department.name))
                    return redirect(url_for("admin.departments"))
        status = 422
    return render_template("admin/departments.html", form=form, error=error, departments=people.departments(),
                           members=service.department_member_counts(), grids=service.top_grids_by_id()), status


@blp.route("/departments/<int:department_id>", methods=["GET", "POST"])
def department(department_id: int):
    item = service.department_or_404(department_id)
    form = _department_form(obj=item)
    del form.code
    error = None
    if request.method == "GET":
        grid_node = service.top_grids_by_id().get(item.grid_node_id)
        form.grid.data = grid_node.code if grid_node else ""
        return render_template("admin/department.html", item=item, form=form, error=error)
    if form.validate_on_submit():
        node, ok = _grid_from(form)
        if ok:
            try:
                service.update_department(item, form.name.data, form.level.data, node)
            except InvalidInput as exc:
                rollback()
                error = _apply_errors(form, exc)
            else:
                commit()
                flash(_("Saved."))
                return redirect(url_for("admin.departments"))
    return render_template("admin/department.html", item=item, form=form, error=error), 422


# -- background jobs (issue 5) --------------------------------------------------------------
@blp.get("/jobs")
def jobs():
    """Queue length, scheduled and failed jobs, periodic jobs and overdue timers (read-only)."""
    from flask_babel import format_datetime

    from app.jobs import OVERDUE_GRACE_SECONDS, job_status

    status = job_status()
    return render_template("admin/jobs.html", status=status, form=ConfirmForm(), grace=OVERDUE_GRACE_SECONDS,
                           when=lambda value: format_datetime(value, "yyyy-MM-dd HH:mm:ss") if value else "—")


@blp.post("/jobs/failed/<job_id>/requeue")
def requeue_job(job_id: str):
    """Put a failed job back on its queue (jobs are idempotent: a rerun does no harm)."""
    from app.jobs import requeue_failed

    form = ConfirmForm()
    if not form.validate_on_submit():
        flash(_("The form expired; please try again."))
    elif requeue_failed(job_id):
        flash(_("Job %(id)s is queued again.", id=job_id))
    else:
        flash(_("Job %(id)s is not among the failed jobs (any more).", id=job_id))
    return redirect(url_for("admin.jobs"))


# -- CSV import -----------------------------------------------------------------------------
IMPORTS = {
    "grids": (service.import_grids, service.GRID_COLUMNS, "admin.grids"),
    "users": (service.import_users, service.USER_COLUMNS, "admin.users"),
}


def _import(kind: str):
    run, columns, done_endpoint = IMPORTS[kind]
    form = ImportForm()
    if request.method == "GET":
        return render_template("admin/import.html", kind=kind, form=form, columns=columns, report=None)
    if not form.validate_on_submit():
        return render_template("admin/import.html", kind=kind, form=form, columns=columns, report=None), 422
    data = form.file.data.read(service.MAX_IMPORT_BYTES + 1)
    report = run(data, dry_run=form.dry_run.data)
    if not report.ok:
        rollback()
        return render_template("admin/import.html", kind=kind, form=form, columns=columns, report=report), 422
    if form.dry_run.data:
        rollback()
        return render_template("admin/import.html", kind=kind, form=form, columns=columns, report=report, checked=True)
    commit()
    if report.passwords:
        return render_template("admin/import_done.html", kind=kind, report=report)
    flash(_("Import finished: %(summary)s", summary=report.summary()))
    return redirect(url_for(done_endpoint))


@blp.route("/grids/import", methods=["GET", "POST"])
def import_grids():
    return _import("grids")


@blp.route("/users/import", methods=["GET", "POST"])
def import_users():
    return _import("users")


@blp.errorhandler(RequestEntityTooLarge)
def _too_large(error):
    kind = "users" if request.endpoint == "admin.import_users" else "grids"
    if request.endpoint not in IMPORT_ENDPOINTS:
        from app.errors import respond

        return respond("payload_too_large", _("The request is too large."), 413)
    report = service.ImportReport(kind, issues=[service.ImportIssue(None, None, _("The file is larger than 2 MB: split it into several files."))])
    form = ImportForm(formdata=None)
    return render_template("admin/import.html", kind=kind, form=form, columns=IMPORTS[kind][1], report=report), 413
