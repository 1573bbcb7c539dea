"""Grids, people, their roles and API tokens."""
from __future__ import annotations

from datetime import datetime

from flask_login import UserMixin
from sqlalchemy import ForeignKey, Index, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.db import db
from app.timeutil import UTCDateTime, utcnow

GRID_LEVELS = ("district", "street", "community", "block", "grid", "building")


class GridNode(db.Model):
    """A node of the grid tree (街道 → 社区 → 街区 → 网格 → 楼栋).

    ``path`` is the materialised chain of ids ("/1/4/9/") so that "this node and
    everything below it" is one indexed prefix match.
    """

    __tablename__ = "grid_nodes"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16))
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id"))
    path: Mapped[str] = mapped_column(String(512), index=True, default="")

    parent: Mapped["GridNode | None"] = relationship(remote_side=[id])

    def contains(self, other: "GridNode") -> bool:
        return other.path.startswith(self.path)


class Department(db.Model):
    """A unit that receives dispatched work (街道职能部门 or 区级部门)."""

    __tablename__ = "departments"

    id: Mapped[int] = mapped_column(primary_key=True)
    code: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(16), default="street")  # street / district
    grid_node_id: Mapped[int | None] = mapped_column(ForeignKey("grid_nodes.id"))


class User(UserMixin, db.Model):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64), unique=True)
    display_name: Mapped[str] = mapped_column(String(200))
    password_hash: Mapped[str | None] = mapped_column(String(255))
    is_active: Mapped[bool] = mapped_column(default=True)
    is_admin: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    # Lockout after repeated failed sign-ins (LOGIN_MAX_FAILURES, LOGIN_LOCKOUT_MINUTES).
    failed_logins: Mapped[int] = mapped_column(default=0)
    department_id: Mapped[int | None] = mapped_column(ForeignKey("departments.id"))
    phone: Mapped[str | None] = mapped_column(String(32))
    locked_until: Mapped[datetime | None] = mapped_column(UTCDateTime)

    def holds(self, *roles: str) -> bool:
        return any(assignment.role in roles for assignment in self.roles)

    roles: Mapped[list["RoleAssignment"]] = relationship(
        back_populates="user", cascade="all, delete-orphan", lazy="select"
    )


class RoleAssignment(db.Model):
    """A user holds a role at a grid node: work for that node and below is theirs."""

    __tablename__ = "role_assignments"
    __table_args__ = (UniqueConstraint("user_id", "role", "grid_node_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    role: Mapped[str] = mapped_column(String(64))
    grid_node_id: Mapped[int] = mapped_column(ForeignKey("grid_nodes.id"))

    user: Mapped[User] = relationship(back_populates="roles")
    grid_node: Mapped[GridNode] = relationship(lazy="joined")


class ApiToken(db.Model):
    """A bearer token for integrations; only its SHA-256 is stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    name: Mapped[str] = mapped_column(String(200))
    token_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)

    user: Mapped[User] = relationship(lazy="joined")
