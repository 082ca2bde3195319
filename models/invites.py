"""One-time invite codes that bind a WeChat user to a unit (liaison) or to the office."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, String
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped


class Invite(Timestamped, Base):
    """A code printed once by `donorbot invite`; only its keyed hash is stored."""

    __tablename__ = "invites"

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(ForeignKey("jurisdictions.code"))
    role: Mapped[str] = mapped_column(String(16))  # liaison | office
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), default=None
    )
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None] = mapped_column(default=None)
    used_by: Mapped[str | None] = mapped_column(String(64), default=None)  # hash of the openid
    created_by: Mapped[str] = mapped_column(String(128), default="cli")
    revoked: Mapped[bool] = mapped_column(default=False)
