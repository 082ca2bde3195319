"""Who a WeChat user is to us: bindings of an openid, and anonymised follower counts."""

from __future__ import annotations

from datetime import date

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped


class Binding(Timestamped, Base):
    """An openid bound to a role (liaison of a unit, donor, office staff) in a jurisdiction."""

    __tablename__ = "bindings"
    __table_args__ = (UniqueConstraint("jurisdiction", "openid", "role"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str] = mapped_column(String(128), index=True)
    role: Mapped[str] = mapped_column(String(16))  # liaison | donor | office
    unit_id: Mapped[int | None] = mapped_column(
        ForeignKey("units.id", ondelete="CASCADE"), default=None
    )
    donor_id: Mapped[int | None] = mapped_column(
        ForeignKey("donors.id", ondelete="CASCADE"), default=None
    )
    # set when the liaison proved to be this directory entry (code + phone's last four digits)
    liaison_id: Mapped[int | None] = mapped_column(
        ForeignKey("liaisons.id", ondelete="SET NULL"), default=None
    )


class SubscriberDaily(Base):
    """Anonymised follow/unfollow counts per day: all we keep after an unsubscribe."""

    __tablename__ = "subscriber_daily"
    __table_args__ = (UniqueConstraint("jurisdiction", "day"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    day: Mapped[date]
    subscribes: Mapped[int] = mapped_column(default=0)
    unsubscribes: Mapped[int] = mapped_column(default=0)
