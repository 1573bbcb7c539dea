"""Admin forms. Choices that come from the database or the role catalogue are filled in
by the views; the services check everything again (the CLI uses them without forms)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_wtf import FlaskForm
from flask_wtf.file import FileField, FileRequired
from wtforms import BooleanField, PasswordField, SelectField, StringField
from wtforms.validators import DataRequired, Length, Optional

from app.admin.service import DEPARTMENT_LEVEL_LABELS, DEPARTMENT_LEVELS, GRID_LEVELS, LEVEL_LABELS

REQUIRED = _l("Required.")


def _required():
    return DataRequired(message=REQUIRED)


def _level_choices():
    return [(level, LEVEL_LABELS[level]) for level in GRID_LEVELS]


class GridCreateForm(FlaskForm):
    parent = SelectField(_l("Parent"), choices=[], validate_choice=False)
    level = SelectField(_l("Level"), choices=_level_choices)
    code = StringField(_l("Code"), validators=[_required(), Length(max=64)])
    name = StringField(_l("Name"), validators=[_required(), Length(max=200)])


class GridRenameForm(FlaskForm):
    name = StringField(_l("Name"), validators=[_required(), Length(max=200)])


class UserCreateForm(FlaskForm):
    username = StringField(_l("Username"), validators=[_required(), Length(max=64)])
    display_name = StringField(_l("Display name"), validators=[_required(), Length(max=200)])
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=32)])
    password = PasswordField(_l("Initial password"), validators=[Optional(), Length(max=200)],
                             description=_l("At least 8 characters. Leave empty to generate one (shown once)."))
    department = SelectField(_l("Department"), choices=[], validate_choice=False)
    is_admin = BooleanField(_l("Administrator"))


class UserEditForm(FlaskForm):
    display_name = StringField(_l("Display name"), validators=[_required(), Length(max=200)])
    phone = StringField(_l("Phone"), validators=[Optional(), Length(max=32)])
    department = SelectField(_l("Department"), choices=[], validate_choice=False)
    is_admin = BooleanField(_l("Administrator"))


class PasswordForm(FlaskForm):
    password = PasswordField(_l("New password"), validators=[Optional(), Length(max=200)],
                             description=_l("At least 8 characters. Leave empty to generate one (shown once)."))


class RoleForm(FlaskForm):
    role = SelectField(_l("Role"), choices=[], validate_choice=False)
    grid = SelectField(_l("At grid"), choices=[], validate_choice=False)


class TokenForm(FlaskForm):
    name = StringField(_l("What the token is for"), validators=[_required(), Length(max=200)])


class ConfirmForm(FlaskForm):
    """Buttons that change something: only the CSRF token."""


class DepartmentForm(FlaskForm):
    code = StringField(_l("Code"), validators=[_required(), Length(max=64)])
    name = StringField(_l("Name"), validators=[_required(), Length(max=200)])
    level = SelectField(_l("Level"), choices=lambda: [(level, DEPARTMENT_LEVEL_LABELS[level]) for level in DEPARTMENT_LEVELS])
    grid = SelectField(_l("Street or district"), choices=[], validate_choice=False)


class ImportForm(FlaskForm):
    file = FileField(_l("CSV file"), validators=[FileRequired(message=_l("Choose a file."))])
    dry_run = BooleanField(_l("Only check, import nothing"))
