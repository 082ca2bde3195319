"""Console accounts and edited reply templates (the office console, issue 7)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped


class ConsoleUser(Timestamped, Base):
    """Someone who logs in to /console/: an office user sees one jurisdiction, an admin all."""

    __tablename__ = "console_users"
    __table_args__ = (UniqueConstraint("username"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    username: Mapped[str] = mapped_column(String(64))
    password_hash: Mapped[str] = mapped_column(String(255))  # argon2id, encoded with its salt
    role: Mapped[str] = mapped_column(String(16))  # office | admin
    jurisdiction: Mapped[str | None] = mapped_column(String(64), default=None)  # None: admin
    failed_logins: Mapped[int] = mapped_column(default=0)
    last_failed_at: Mapped[datetime | None] = mapped_column(default=None)
    disabled: Mapped[bool] = mapped_column(default=False)


class ReplyTemplateVersion(Timestamped, Base):
    """One saved version of a chat reply template of a jurisdiction; the newest is in use.

    The shipped file (templates/replies/<name>.j2) is version 0; rolling back saves the
    old text again as a new version, so the history only grows.
    """

    __tablename__ = "reply_template_versions"
    __table_args__ = (UniqueConstraint("jurisdiction", "name", "version"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    version: Mapped[int]
    source: Mapped[str] = mapped_column(Text)
    author: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(String(255), default="")
