from flask_smorest import Blueprint
from marshmallow import Schema, fields

from app.people.auth import current_user, login_required

blp = Blueprint("api_people", __name__, url_prefix="/api", description="The caller")


class RoleOut(Schema):
    role = fields.Str()
    grid = fields.Function(lambda a: {"code": a.grid_node.code, "name": a.grid_node.name, "level": a.grid_node.level})


class MeOut(Schema):
    username = fields.Str()
    display_name = fields.Str()
    is_admin = fields.Bool()
    roles = fields.List(fields.Nested(RoleOut))


@blp.get("/me")
@blp.response(200, MeOut)
@login_required
def me():
    """Who the credentials belong to, and the roles they hold where."""
    return current_user()
