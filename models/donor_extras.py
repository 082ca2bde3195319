"""Emergency-call consent: who agreed to be asked for blood in an emergency, and their type.

The broadcast side selects ``consented`` rows of a jurisdiction by blood type
(`consenting_openids`); 「退订」 sets `withdrawn_at`; unfollowing deletes the row
(`erase_consent`, called from the unsubscribe handler). Query functions never commit.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import DateTime, Index, String, UniqueConstraint, delete, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Mapped, mapped_column

from models.base import Base, Timestamped
from models.donations import BloodUse, Donation


class EmergencyConsent(Timestamped, Base):
    """One follower's opt-in to emergency donation calls (「我愿意接收应急献血通知」)."""

    __tablename__ = "emergency_consents"
    __table_args__ = (
        UniqueConstraint("jurisdiction", "openid"),
        Index("ix_emergency_consents_type", "jurisdiction", "blood_type"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    jurisdiction: Mapped[str] = mapped_column(String(64))
    openid: Mapped[str] = mapped_column(String(128))
    blood_type: Mapped[str] = mapped_column(String(8))  # A, B, O, AB; "-"/"+" for Rh if given
    consented_at: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), default=None)


async def record_consent(
    session: AsyncSession, jurisdiction: str, openid: str, blood_type: str, now: datetime
) -> EmergencyConsent:
    """Consent (again) with this blood type; a withdrawn consent is renewed."""
    row = await _row(session, jurisdiction, openid)
    if row is None:
        row = EmergencyConsent(jurisdiction=jurisdiction, openid=openid)
        session.add(row)
    row.blood_type = blood_type
    row.consented_at = now
    row.withdrawn_at = None
    await session.flush()
    return row


async def withdraw_consent(
    session: AsyncSession, jurisdiction: str, openid: str, now: datetime
) -> bool:
    """「退订」: True when there was a live consent to withdraw."""
    row = await _row(session, jurisdiction, openid)
    if row is None or row.withdrawn_at is not None:
        return False
    row.withdrawn_at = now
    return True


async def erase_consent(session: AsyncSession, jurisdiction: str, openid: str) -> int:
    """On unsubscribe: delete the consent row (SPEC §7: keep nothing about the user)."""
    result = await session.execute(
        delete(EmergencyConsent).where(
            EmergencyConsent.jurisdiction == jurisdiction, EmergencyConsent.openid == openid
        )
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]


async def consenting_openids(
    session: AsyncSession, jurisdiction: str, blood_types: tuple[str, ...] = ()
) -> list[str]:
    """The openids to call: live consents, optionally of the given ABO types (Rh ignored)."""
    query = select(EmergencyConsent.openid, EmergencyConsent.blood_type).where(
        EmergencyConsent.jurisdiction == jurisdiction, EmergencyConsent.withdrawn_at.is_(None)
    )
    rows = (await session.execute(query)).all()
    wanted = {t.rstrip("+-") for t in blood_types}
    return [o for o, t in rows if not wanted or t.rstrip("+-") in wanted]


async def _row(session: AsyncSession, jurisdiction: str, openid: str) -> EmergencyConsent | None:
    return await session.scalar(
        select(EmergencyConsent).where(
            EmergencyConsent.jurisdiction == jurisdiction, EmergencyConsent.openid == openid
        )
    )


async def donor_donations(session: AsyncSession, donor_id: int) -> list[Donation]:
    """One donor's donations, oldest first (the records and every policy answer read these)."""
    rows = await session.scalars(
        select(Donation).where(Donation.donor_id == donor_id).order_by(Donation.donated_at)
    )
    return list(rows)


async def donor_ledger(session: AsyncSession, donor_id: int) -> list[BloodUse]:
    """Blood already used free or reimbursed against this donor's donations."""
    rows = await session.scalars(
        select(BloodUse).where(BloodUse.donor_id == donor_id).order_by(BloodUse.used_at)
    )
    return list(rows)
