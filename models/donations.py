"""Donors, donations and the blood-use ledger."""

from __future__ import annotations

from datetime import date

from sqlalchemy import Date, ForeignKey, Index, String, Text, UniqueConstraint, text
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped


class Donor(Timestamped, Base):
    """A donor, known only by a keyed hash of the ID number (never the number itself)."""

    __tablename__ = "donors"
    __table_args__ = (UniqueConstraint("jurisdiction", "id_hash"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(ForeignKey("jurisdictions.code"))
    id_hash: Mapped[str] = mapped_column(String(64))
    name_masked: Mapped[str] = mapped_column(String(64), default="")
    # a keyed hash of the full name, so a binding can check "ID number + name" without storing it
    name_hash: Mapped[str | None] = mapped_column(String(64), default=None)
    blood_type: Mapped[str | None] = mapped_column(String(8), default=None)
    birth_date: Mapped[date | None] = mapped_column(Date, default=None)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), default=None)


class Donation(Timestamped, Base):
    """One donation from the blood station's records, credited to a unit (or awaiting review)."""

    __tablename__ = "donations"
    __table_args__ = (
        UniqueConstraint("jurisdiction", "record_id"),
        # the progress queries: one unit, one date range → an index range scan
        Index("ix_donations_unit_date", "unit_id", "donated_at"),
        Index("ix_donations_donor_date", "donor_id", "donated_at"),
        # the review queue only: partial, so credited rows (nearly all) never touch it
        Index(
            "ix_donations_unmatched",
            "jurisdiction",
            "unit_raw_normalized",
            postgresql_where=text("unit_id IS NULL"),
            sqlite_where=text("unit_id IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    # No foreign key here: the importer checks the jurisdiction against the account file,
    # and a per-row FK check costs ~5% of a million-row import on PostgreSQL.
    jurisdiction: Mapped[str] = mapped_column(String(64))
    record_id: Mapped[str] = mapped_column(String(64))
    donated_at: Mapped[date] = mapped_column(Date)
    donor_id: Mapped[int | None] = mapped_column(ForeignKey("donors.id"), default=None)
    kind: Mapped[str] = mapped_column(String(16))  # whole_blood | platelets
    volume_ml: Mapped[int] = mapped_column(default=0)
    therapeutic_units: Mapped[float] = mapped_column(default=0.0)
    blood_type: Mapped[str | None] = mapped_column(String(8), default=None)
    unit_id: Mapped[int | None] = mapped_column(ForeignKey("units.id"), default=None)
    # the unit name as the file gave it; kept while unit_id is NULL (the review queue)
    unit_raw: Mapped[str | None] = mapped_column(String(255), default=None)
    unit_raw_normalized: Mapped[str | None] = mapped_column(String(255), default=None)
    site: Mapped[str | None] = mapped_column(String(128), default=None)
    synthetic: Mapped[bool] = mapped_column(default=False)


class BloodUse(Timestamped, Base):
    """The 用血/报销 ledger: blood already reimbursed reduces what is left."""

    __tablename__ = "blood_use"

    id: Mapped[int] = mapped_column(primary_key=True)
    donor_id: Mapped[int] = mapped_column(ForeignKey("donors.id", ondelete="CASCADE"), index=True)
    used_at: Mapped[date] = mapped_column(Date)
    volume_ml: Mapped[int]
    relation: Mapped[str] = mapped_column(String(16), default="self")
    note: Mapped[str] = mapped_column(Text, default="")
