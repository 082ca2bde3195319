"""Automatic reminders, each created once per (jurisdiction, kind, period, unit).

- `before`: `days_before` days (default 7) before the first month of a unit's scheduled
  line, its liaisons get the unit, the month, the target and the booking contact.
- `mid`: from `mid_month_day` (default the 15th), units below `mid_month_below` (50 %) of
  a line running this month are reminded of what is left.
- `report`: on the month's last working day (Monday–Friday; public holidays are not
  modelled), the office staff get a 通报 with the month's totals, and the progress
  workbook is written next to it (`reports_dir`).

The key `reminder:<kind>:<YYYY-MM>:<unit id | all>` is the broadcast's idempotency key,
unique in the database, so however many workers plan at once and however often they
restart, each reminder exists once. A worker that was down on the day catches up
while the window is still open (any day of the `days_before` window; any day after the
15th; the last working day or the weekend after it).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.broadcasts.compose import Composer
from bot.broadcasts.service import BroadcastError, create_broadcast, find
from bot.clock import Clock, local_now
from bot.render import number
from bot.settings import Jurisdiction, Settings
from models.audiences import AudienceSpec, Recipient, line_params, recipients
from models.progress_period import month_end
from models.progress_summary import jurisdiction_progress
from models.progress_types import LineProgress

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parents[2] / "templates" / "broadcasts"


@dataclass(frozen=True)
class Due:
    kind: str  # before | mid | report
    key: str
    spec: AudienceSpec
    params: dict[str, str]
    unit_id: int | None


def last_working_day(year: int, month: int) -> date:
    day = month_end(year, month) - timedelta(days=1)
    while day.weekday() >= 5:
        day -= timedelta(days=1)
    return day


def _line_params(line: LineProgress, contact: str) -> dict[str, str]:
    figures = line_params(line)  # the audiences' own wording of a line's numbers
    return {
        "unit": line.unit_name,
        "month": figures["period"],
        **figures,
        "contact": contact or "献血办",
    }


async def due_reminders(
    session: AsyncSession, code: str, j: Jurisdiction, today: date
) -> list[Due]:
    """The reminders whose window contains `today` (created or not)."""
    cfg = j.reminders
    out: list[Due] = []
    nxt = month_end(today.year, today.month)  # the first day of next month
    if (nxt - today).days <= cfg.days_before:
        ahead = await jurisdiction_progress(session, code, nxt.year, today=today)
        for line in ahead.lines:
            if line.kind != "scheduled" or line.target is None:
                continue
            if line.period.year != nxt.year or line.period.first_month != nxt.month:
                continue
            out.append(
                Due(
                    "before",
                    f"reminder:before:{nxt:%Y-%m}:{line.unit_id}",
                    AudienceSpec(code, "liaisons", unit=line.unit_name),
                    _line_params(line, cfg.booking_contact),
                    line.unit_id,
                )
            )
    report_day = last_working_day(today.year, today.month)
    if today.day >= cfg.mid_month_day or (cfg.month_end and today >= report_day):
        now = await jurisdiction_progress(session, code, today.year, today=today)
        if today.day >= cfg.mid_month_day:
            below = Decimal(str(cfg.mid_month_below))
            for line in now.lines:
                if line.kind != "scheduled" or not line.target:
                    continue
                if not line.period.contains(today.month) or line.period.year != today.year:
                    continue
                if line.done >= line.target * below:
                    continue
                out.append(
                    Due(
                        "mid",
                        f"reminder:mid:{today:%Y-%m}:{line.unit_id}",
                        AudienceSpec(code, "liaisons", unit=line.unit_name),
                        _line_params(line, cfg.booking_contact),
                        line.unit_id,
                    )
                )
        if cfg.month_end and today >= report_day:
            month_lines = now.schedule_lines(today.month)
            totals = now.totals(month_lines)
            summary = "；".join(
                f"计划{number(t.target)}{t.measure}，完成{number(t.done)}{t.measure}"
                f"（{number(t.percent)}%）"
                if t.percent is not None
                else f"完成{number(t.done)}{t.measure}"
                for t in totals
            )
            behind = sorted({ln.unit_name for ln in month_lines if ln.behind_pace})
            out.append(
                Due(
                    "report",
                    f"reminder:report:{today:%Y-%m}:all",
                    AudienceSpec(code, "office"),
                    {
                        "jurisdiction": j.name,
                        "month": f"{today.month}月",
                        "summary": summary or "本月没有排期计划",
                        "behind_count": str(len(behind)),
                        "behind": "、".join(behind[:10]) + ("等" if len(behind) > 10 else ""),
                        "as_of": f"{today:%Y年%m月%d日}",
                    },
                    None,
                )
            )
    return out


def reminder_composer(j: Jurisdiction, kind: str) -> Composer:
    cfg = j.reminders
    if cfg.channel == "custom" or not cfg.fields:
        text = (TEMPLATES / f"reminder_{kind}.j2").read_text(encoding="utf-8").strip()
        return Composer("custom", "", {"content": text})
    return Composer(cfg.channel, cfg.template_id, cfg.fields)


async def plan_reminders(
    sessions: async_sessionmaker[AsyncSession],
    settings: Settings,
    clock: Clock,
    reports_dir: Path | None = None,
) -> list[int]:
    """Create the reminders due now that do not exist yet; returns the new broadcast ids."""
    created: list[int] = []
    for code, j in settings.jurisdictions.items():
        if not j.reminders.enabled:
            continue
        today = local_now(clock, j.timezone).date()
        async with sessions() as session:
            dues = await due_reminders(session, code, j, today)
        for due in dues:
            async with sessions() as session:
                if await find(session, code, due.key) is not None:
                    continue
                people = [
                    Recipient(r.openid, r.role, r.unit_id, r.unit, {**r.params, **due.params})
                    for r in await recipients(session, due.spec, today=today)
                    if due.unit_id is None or r.unit_id == due.unit_id
                ]
                if not people:
                    continue  # nobody bound yet: looked at again next time, while the window lasts
                if due.kind == "report" and reports_dir is not None:
                    await _write_report(session, code, today, reports_dir)
                try:
                    made = await create_broadcast(
                        session,
                        spec=due.spec,
                        composer=reminder_composer(j, due.kind),
                        send_at=clock.now(),
                        today=today,
                        creator="reminders",
                        key=due.key,
                        kind="reminder",
                        people=people,
                    )
                except BroadcastError as exc:  # e.g. everyone opted out
                    log.info("reminder %s not created: %s", due.key, exc)
                    continue
                if made.created:
                    created.append(made.id)
                    log.info("reminder created", extra={"key": due.key, "broadcast": made.id})
    return created


async def _write_report(session: AsyncSession, code: str, today: date, out_dir: Path) -> None:
    from bot.export import export_progress

    path = out_dir / f"{code}-{today:%Y-%m}-progress.xlsx"
    await export_progress(session, code, today.year, path, today=today)


class ReminderPlanner:
    """Runs `plan_reminders` at most every `every` seconds (the worker calls it each loop)."""

    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        settings: Settings,
        clock: Clock,
    ) -> None:
        self.sessions = sessions
        self.settings = settings
        self.clock = clock
        self.every = settings.reminders_every_seconds
        self._next = 0.0

    async def __call__(self) -> None:
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self.every
        await plan_reminders(
            self.sessions, self.settings, self.clock, Path(self.settings.reports_dir)
        )
