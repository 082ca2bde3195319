"""Demo bindings, so that `donorbot chat` answers 「这个月还差多少」 on day one.

`demo load` binds the chat's default openid as the liaison of a unit that is behind
this month (else any unit with a line this month), and a second openid as office
staff, in every jurisdiction that has such a unit.  Re-running keeps them.
"""

from __future__ import annotations

from datetime import date

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from models.plans import Unit
from models.progress import jurisdiction_progress
from models.users import Binding

DEMO_LIAISON = "o_chat_demo_user"  # `donorbot chat`'s default --openid
DEMO_OFFICE = "o_chat_demo_office"


async def bind_demo_users(
    sessions: async_sessionmaker[AsyncSession], code: str, today: date
) -> str | None:
    """The unit the demo liaison is bound to in `code` (None when nothing runs this month)."""
    async with sessions() as session:
        whole = await jurisdiction_progress(session, code, today.year, today=today)
        lines = [ln for ln in whole.lines if ln.period.contains(today.month) and ln.target]
        if not lines:
            return None
        # a monthly line reads best for 「这个月还差多少」; behind pace makes it interesting
        ranked = sorted(lines, key=lambda ln: (ln.period.spans_months, not ln.behind_pace))
        pick = ranked[0]
        await _bind(session, code, DEMO_LIAISON, "liaison", pick.unit_id)
        await _bind(session, code, DEMO_OFFICE, "office", None)
        await session.commit()
        unit = await session.get(Unit, pick.unit_id)
        return unit.name if unit else None


async def _bind(
    session: AsyncSession, code: str, openid: str, role: str, unit_id: int | None
) -> None:
    row = await session.scalar(
        select(Binding).where(
            Binding.jurisdiction == code, Binding.openid == openid, Binding.role == role
        )
    )
    if row is None:
        session.add(Binding(jurisdiction=code, openid=openid, role=role, unit_id=unit_id))
    else:
        row.unit_id = unit_id
