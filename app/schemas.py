"""Schemas shared by several features' APIs."""
from __future__ import annotations

from flask import current_app
from marshmallow import Schema, ValidationError, fields, validate, validates_schema


class PageArgs(Schema):
    page = fields.Int(load_default=1, validate=validate.Range(min=1))
    page_size = fields.Int(load_default=None, validate=validate.Range(min=1))

    @validates_schema
    def _limit(self, data, **kwargs):
        size = data.get("page_size")
        maximum = current_app.config["PAGE_SIZE_MAX"]
        if size is not None and size > maximum:
            raise ValidationError(f"must be at most {maximum}", field_name="page_size")


def page_size_of(args: dict) -> int:
    return args.get("page_size") or current_app.config["PAGE_SIZE_DEFAULT"]


class GridRef(Schema):
    code = fields.Str()
    name = fields.Str()
    level = fields.Str()


class PageOut(Schema):
    total = fields.Int()
    page = fields.Int()
    page_size = fields.Int()
