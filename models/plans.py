"""Jurisdictions, units and their donation plans (SPEC §3)."""

from __future__ import annotations

from sqlalchemy import Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from models.base import Base, Timestamped

MEASURES = ("人次", "人", "人份", "ml")
LINE_KINDS = ("scheduled", "annual", "emergency", "share", "group")
ALL_MONTHS = 0b1111111111110  # bits 1..12


class JurisdictionRow(Timestamped, Base):
    """A 辖区; the account file is the source of truth, this row anchors its data."""

    __tablename__ = "jurisdictions"

    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128))
    timezone: Mapped[str] = mapped_column(String(64), default="Asia/Shanghai")
    parent_region: Mapped[str | None] = mapped_column(String(128), default=None)
    policy: Mapped[str | None] = mapped_column(String(64), default=None)


class Unit(Timestamped, Base):
    """A 单位 (or a named group such as 「市纪委及市委工作机构(17个)」) in a jurisdiction."""

    __tablename__ = "units"
    __table_args__ = (UniqueConstraint("jurisdiction", "name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(ForeignKey("jurisdictions.code"))
    name: Mapped[str] = mapped_column(String(255))
    normalized: Mapped[str] = mapped_column(String(255), index=True)
    category: Mapped[str | None] = mapped_column(String(64), default=None)
    parent_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), default=None, index=True)
    headcount: Mapped[int | None] = mapped_column(default=None)
    is_group: Mapped[bool] = mapped_column(Boolean, default=False)

    aliases: Mapped[list[UnitAlias]] = relationship(back_populates="unit", lazy="raise")


class UnitAlias(Timestamped, Base):
    """Another name for a unit (「财政局」 for 「市财政局」), matched by its normalised form."""

    __tablename__ = "unit_aliases"
    __table_args__ = (UniqueConstraint("jurisdiction", "normalized"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(ForeignKey("jurisdictions.code"))
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id", ondelete="CASCADE"), index=True)
    alias: Mapped[str] = mapped_column(String(255))
    normalized: Mapped[str] = mapped_column(String(255))

    unit: Mapped[Unit] = relationship(back_populates="aliases", lazy="raise")


class Plan(Timestamped, Base):
    """A plan: jurisdiction + year + measure + source document. Demo copies are marked."""

    __tablename__ = "plans"
    __table_args__ = (UniqueConstraint("jurisdiction", "year", "measure", "is_demo"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(ForeignKey("jurisdictions.code"))
    year: Mapped[int]
    measure: Mapped[str] = mapped_column(String(8))  # 人次 | 人 | 人份 | ml
    source: Mapped[str] = mapped_column(String(255), default="")
    is_demo: Mapped[bool] = mapped_column(Boolean, default=False)

    lines: Mapped[list[PlanLine]] = relationship(
        back_populates="plan", cascade="all, delete-orphan", lazy="raise"
    )


class PlanLine(Base):
    """One line of a plan: a unit, a period (a set of months) and a target.

    `months` is a bit set (bit m = month m) so a month, a range 「2~9月」, a set
    「5、9、11月」 and 「全年」 are one representation; `month_text` keeps the source form.
    """

    __tablename__ = "plan_lines"
    __table_args__ = (
        UniqueConstraint("plan_id", "unit_id", "months", "kind"),
        Index("ix_plan_lines_unit", "unit_id", "plan_id"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    plan_id: Mapped[int] = mapped_column(ForeignKey("plans.id", ondelete="CASCADE"), index=True)
    unit_id: Mapped[int] = mapped_column(ForeignKey("units.id"))
    kind: Mapped[str] = mapped_column(String(16))  # scheduled|annual|emergency|share|group
    months: Mapped[int]
    month_text: Mapped[str] = mapped_column(String(32))
    target: Mapped[int | None] = mapped_column(default=None)
    share_percent: Mapped[int | None] = mapped_column(default=None)
    note: Mapped[str] = mapped_column(Text, default="")
    line_no: Mapped[int] = mapped_column(default=0)

    plan: Mapped[Plan] = relationship(back_populates="lines", lazy="raise")
    unit: Mapped[Unit] = relationship(lazy="raise")

    def has_month(self, month: int) -> bool:
        return bool(self.months & (1 << month))
