"""The objection form (异议) and the supervisor's call-back form."""
from __future__ import annotations

from flask_babel import lazy_gettext as _l
from flask_babel import lazy_pgettext
from flask_wtf import FlaskForm
from wtforms import StringField, TextAreaField
from wtforms.validators import InputRequired, Length, Optional, ValidationError

from app.disclosure import service


class ObjectionForm(FlaskForm):
    """Only what the process reads: who objects (a name or nothing) and the objection."""

    objector = StringField(
        lazy_pgettext("disclosure", "Your name (optional)"),
        validators=[Optional(), Length(max=service.OBJECTOR_MAX, message=_l("At most %(max)d characters."))],
    )
    content = TextAreaField(
        lazy_pgettext("disclosure", "Your objection"),
        validators=[InputRequired(message=_l("Please write your objection."))],
    )

    def validate_content(self, field) -> None:
        text = (field.data or "").strip()
        if not service.CONTENT_MIN <= len(text) <= service.CONTENT_MAX:
            raise ValidationError(_l("Please write your objection in %(min)d to %(max)d characters.",
                                     min=service.CONTENT_MIN, max=service.CONTENT_MAX))


class CallbackForm(FlaskForm):
    note = TextAreaField(lazy_pgettext("disclosure", "Note (optional)"),
                         validators=[Optional(), Length(max=1000, message=_l("At most %(max)d characters."))])
