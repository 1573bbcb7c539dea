"""Forms of the public pages (Flask-WTF: the CSRF token is checked as part of validation,
so a stale form is re-rendered in place with what the resident typed)."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from flask_wtf import FlaskForm
from wtforms import BooleanField, MultipleFileField, StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from app.public import service


class DemandForm(FlaskForm):
    """群众点单: what a resident reports. Choices are filled per request (grids from the
    database, categories from categories.json) and checked with explicit messages."""

    category = StringField(lazy_pgettext("public", "Category"),
                           validators=[InputRequired(message=_l("Please choose a category."))])
    description = TextAreaField(
        lazy_pgettext("public", "What is the problem?"),
        validators=[InputRequired(message=_l("Please describe the problem."))],
    )
    location = StringField(
        lazy_pgettext("public", "Where exactly?"),
        validators=[Optional(), Length(max=service.LOCATION_MAX, message=_l("At most %(max)d characters."))],
    )
    grid = StringField(lazy_pgettext("public", "Grid"),
                       validators=[InputRequired(message=_l("Please choose your grid."))])
    photos = MultipleFileField(lazy_pgettext("public", "Photos"))
    contact_phone = StringField(lazy_pgettext("public", "Phone for a call back"), validators=[Optional()])
    urgency = StringField(lazy_pgettext("public", "Urgency"), default="normal")
    consent = BooleanField(_l("I agree that staff may call me back on this number about this demand."))

    # Choices are rendered by the template and checked here (plain fields: the template
    # groups grids by community, which select fields cannot).
    def fill_choices(self, language: str) -> None:
        self.categories = service.categories(language)
        self.groups = service.grid_groups()

    def validate_category(self, field) -> None:
        if field.data not in {value for value, _label in service.categories()}:
            raise ValidationError(_l("Please choose a category."))

    def validate_grid(self, field) -> None:
        if field.data not in {code for group in self.groups for code, _name in group.grids}:
            raise ValidationError(_l("Please choose your grid."))

    def validate_urgency(self, field) -> None:
        field.data = (field.data or "normal").strip()
        if field.data not in service.URGENCIES:
            raise ValidationError(_l("Please choose normal or urgent."))

    def validate_description(self, field) -> None:
        text = (field.data or "").strip()
        if not text:
            raise ValidationError(_l("Please describe the problem."))
        if not service.DESCRIPTION_MIN <= len(text) <= service.DESCRIPTION_MAX:
            raise ValidationError(_l("Please describe the problem in %(min)d to %(max)d characters.",
                                     min=service.DESCRIPTION_MIN, max=service.DESCRIPTION_MAX))

    def validate_contact_phone(self, field) -> None:
        phone = service.normalise_phone(field.data)
        if phone is None:
            raise ValidationError(_l("Please enter a mobile number (11 digits) or a landline with area code, e.g. 010-12345678."))
        field.data = phone

    def validate_consent(self, field) -> None:
        if service.normalise_phone(self.contact_phone.data) and not field.data:
            raise ValidationError(_l("Please agree to be called back, or leave the phone empty."))


class ConfirmForm(FlaskForm):
    """The resident's confirmation: the task's own fields come from its form file
    (task_forms); this form carries the CSRF token and the phone check."""

    phone_digits = StringField(_l("Last 4 digits of the phone you gave"))
