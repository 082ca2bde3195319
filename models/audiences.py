"""Who a broadcast goes to: bound WeChat users of a jurisdiction chosen by an `AudienceSpec`.

Query functions only (no WeChat, no HTTP); the broadcast outbox (bot/broadcasts) writes one
delivery per `Recipient`. Every notion is the project's one definition, called, not copied:

- **liaisons** — `bindings` with role liaison (their `unit_id` is the unit); **office** —
  role office; **donors** — role donor with a donor record (`Donor.unit_id` is the unit).
- **month M** (liaisons) — units with a line of the month's *schedule*
  (`JurisdictionProgress.schedule_lines`: scheduled, group and standby lines whose period
  contains M, so 「2~9月」 counts for May). Annual and share lines (「全年」, 附件1's yearly
  targets, 永定区 1250人次 in 「5、9、11月」) are the year's plan, not the month's schedule:
  they do not count, exactly as in the month sheets of the XLSX 通报 and the office's
  「本月全市进度」. Standby units (应急献血) listed in the month do count.
- **behind** (liaisons) — `models.progress.units_behind` as of `today`, the list the office
  sees for 「哪些单位落后」: a line running this month below its expected pace (any kind),
  the unit's worst line giving the numbers.
- **blood type** (donors) — live emergency-call consents of that ABO type
  (`consenting_openids`). Consent is the opt-in, so a follower who consented without binding
  a donor record is included too (no unit; eligible, having no donation on record).
- **eligible** (donors) — the donor may give again *today* the kind of their last donation
  (whole blood 6 months after whole blood, platelets 2 weeks after platelets and fewer than
  24 this year, and every cross interval: platelets 3 months after whole blood…), decided by
  the chat's own `bot.policy.next_eligible` over the jurisdiction's policy data (GB 18467-2011
  inherited). A donor with no donation on record is eligible. Age limits are not applied
  (birth dates are rarely on record); the donor's own 「下次什么时候能献」 still applies them.
- **unit** — resolved by the one resolver (`models.units`); an unknown or ambiguous name is
  an `AudienceError` with the suggestions. Liaisons or donors of that unit only (not of its
  「其中」 sub-units).

Filters combine as "and". One recipient per openid (a `bindings` row is unique per
jurisdiction, openid and role, so this only guards bad data: the first by unit name wins).
Order: unit name, then openid, by code point on every backend.

Per-recipient parameters (strings, as a reply shows them), for templates such as
`{{ unit }}：{{ month }}献血任务{{ target }}`:

- every recipient: `unit` (「」 when none), `month` (「3月」: M, else today's month);
- liaisons, month M: + `period` (the lines' periods, 「3月」「2~9月」) and `target` (summed
  per measure, 「30人」「30人、2000ml」; 「应急献血」 for a standby unit);
- liaisons, behind: + `period`, `target`, `done`, `remaining`, `percent` (「40.0%」) and
  `expected` (where the pace says the unit should be, 「18人」), from the unit's worst line;
- donors: + `blood_type` (the consent's type, else the donor record's, else 「」);
- donors, eligible: + `last_donation` (「2025年9月1日」 or 「无记录」) and `donate_kind`
  (「全血」 or 「单采血小板」: the kind they may give again).

Speed (a 100,000-recipient broadcast must be created in 5 s): one query for the bindings —
columns, not ORM objects, through the session's connection, ordered by the database — plus
one grouped donations query for `eligible`, the consent list for `blood_type`, the year's plan
lines (no donations) for month M, and the progress engine's one batch for `behind`; the rest
is dictionary look-ups. On PostgreSQL, 100k donors take about 0.7–1.0 s and 100k eligibility
checks about 1.0–1.3 s on the 2-core development machine (bench/audience_query.py).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any, Literal, get_args

from sqlalchemy import Select, and_, case, func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.policy import Donation as PolicyDonation
from bot.policy import Policy, next_eligible
from bot.policy.model import KINDS, Kind
from bot.render import number
from models.donations import Donation, Donor
from models.donor_extras import consenting_openids
from models.periods import PeriodError, format_months, parse_months
from models.plans import JurisdictionRow, Unit
from models.progress import LineProgress, units_behind
from models.progress_engine import LineRow, resolve_target
from models.progress_load import load_jurisdiction_units, load_year_lines
from models.progress_summary import SCHEDULE_KINDS
from models.units import UnitRef, resolve_unit
from models.users import Binding

__all__ = [
    "BLOOD_TYPES",
    "AudienceError",
    "AudienceKind",
    "AudienceSpec",
    "Recipient",
    "line_params",
    "preview",
    "recipients",
]

AudienceKind = Literal["liaisons", "donors", "office"]
KIND_NAMES: dict[str, str] = {"liaisons": "联络员", "donors": "献血者", "office": "献血办工作人员"}
ROLES: dict[str, str] = {"liaisons": "liaison", "donors": "donor", "office": "office"}
BLOOD_TYPES = ("A", "B", "O", "AB")
DONATION_KINDS: dict[Kind, str] = {"whole_blood": "全血", "platelets": "单采血小板"}
NO_RECORD = "无记录"
_UNLIMITED = 1 << 62  # units_behind's page size when every unit is wanted
_PROBE_YEARS = 20  # how far back an interval's cutoff is searched (GB 18467's are < 1 year)


class AudienceError(ValueError):
    """A bad audience: the message says what is wrong and how to put it right, in Chinese."""


@dataclass(frozen=True, slots=True)
class Recipient:
    openid: str
    role: str  # "liaison" | "donor" | "office"
    unit_id: int | None
    unit: str | None  # the unit's display name
    params: Mapping[str, str]  # per-recipient template parameters (see the module docstring)


@dataclass(frozen=True, slots=True)
class AudienceSpec:
    """Who to reach. Checked when built (AudienceError); the database checks (jurisdiction,
    unit, plan, policy) happen in `recipients`. `blood_type` is kept as 「A/B/O/AB」."""

    jurisdiction: str
    kind: AudienceKind
    month: int | None = None  # liaisons of units with a schedule line in month M of `year`
    year: int | None = None  # default: the year of `today`
    behind: bool = False  # liaisons of units behind their expected pace (as of today)
    blood_type: str | None = None  # donors opted in to emergency calls with this ABO type
    eligible: bool = False  # donors whose donation interval has passed as of today
    unit: str | None = None  # donors of / liaisons of one unit (models.units resolves it)

    def __post_init__(self) -> None:
        if not self.jurisdiction or not self.jurisdiction.strip():
            raise AudienceError("请指定辖区（--jurisdiction）")
        if self.kind not in get_args(AudienceKind):
            raise AudienceError(
                f"未知的受众「{self.kind}」：可选 liaisons（联络员）、donors（献血者）、"
                "office（献血办工作人员）"
            )
        if self.month is not None:
            try:
                parse_months(self.month)  # the one period parser: 0, 13, 「十三」 are refused
            except PeriodError as exc:
                raise AudienceError(str(exc)) from None
        if self.year is not None and not 2000 <= self.year <= 2100:
            raise AudienceError(f"年份 {self.year} 不合理（应为 2000～2100）")
        if self.year is not None and self.month is None:
            raise AudienceError("年份（--year）只和月份（--month）一起使用")
        name = KIND_NAMES[self.kind]
        if self.kind != "liaisons" and (self.month is not None or self.behind):
            raise AudienceError(
                f"按计划月份（--month）或进度（--behind）只能筛选联络员，不能筛选{name}"
            )
        if self.kind != "donors" and (self.blood_type is not None or self.eligible):
            raise AudienceError(
                f"按血型（--blood-type）或献血间隔（--eligible）只能筛选献血者，不能筛选{name}"
            )
        if self.kind == "office" and self.unit is not None:
            raise AudienceError("献血办工作人员不属于单位，不能按单位（--unit）筛选")
        if self.unit is not None and not self.unit.strip():
            raise AudienceError("单位名称（--unit）为空")
        if self.blood_type is not None:
            object.__setattr__(self, "blood_type", _abo(self.blood_type))

    def describe(self, jurisdiction_name: str | None = None) -> str:
        """「张家界市 · 3月有计划的单位联络员」 (the code when no display name is given)."""
        where = jurisdiction_name or self.jurisdiction
        if self.kind == "office":
            return f"{where} · 献血办工作人员"
        conditions = []
        if self.month is not None:
            year = f"{self.year}年" if self.year else ""
            conditions.append(f"{year}{self.month}月有计划")
        if self.behind:
            conditions.append("本月落后于应有进度")
        if self.eligible:
            conditions.append("已过献血间隔、可再次献血")
        if self.blood_type:
            conditions.append("愿意接收应急献血通知")
        who = "单位联络员" if self.kind == "liaisons" and not self.unit else KIND_NAMES[self.kind]
        if self.blood_type:
            who = f"{self.blood_type}型{who}"
        if self.unit:
            who = f"「{self.unit.strip()}」的{who}"
        elif not conditions:
            who = f"全部{who}"
        return f"{where} · {'且'.join(conditions)}的{who}" if conditions else f"{where} · {who}"


def _abo(text: str) -> str:
    """「o」「O型」「 AB 」→ O, AB; anything else (「C」, Rh signs) is refused."""
    value = text.strip().upper().removesuffix("型").strip()
    if value not in BLOOD_TYPES:
        raise AudienceError(f"血型「{text}」无法识别：只能按 ABO 血型筛选，可选 A、B、O、AB")
    return value


async def recipients(
    session: AsyncSession, spec: AudienceSpec, *, today: date, policy: Policy | None = None
) -> list[Recipient]:
    """The audience as of `today` (a local date in the jurisdiction), in a deterministic order.

    `policy` (for `eligible`) defaults to the shipped rule set named by the jurisdiction's
    row (`jurisdictions.policy`, copied from the account file); callers holding the settings
    may pass the one they use for chat answers.
    """
    place = await session.get(JurisdictionRow, spec.jurisdiction)
    if place is None:
        known = "、".join(await session.scalars(select(JurisdictionRow.code).order_by("code")))
        raise AudienceError(
            f"没有辖区「{spec.jurisdiction}」" + (f"；已有：{known}" if known else "；请先导入计划")
        )
    unit = await _resolve(session, spec) if spec.unit else None
    month = f"{spec.month or today.month}月"
    if spec.kind == "donors":
        return _unique(await _donors(session, spec, unit, today, month, place, policy))
    chosen = None
    if spec.kind == "liaisons":
        chosen = await _liaison_units(session, spec, place, today)
    if unit is not None:  # that unit, if the other filters picked it
        if chosen is None:
            chosen = {unit.id: {}}
        else:
            chosen = {unit.id: chosen[unit.id]} if unit.id in chosen else {}
    return _unique(await _bound(session, spec, chosen, month))


async def preview(
    session: AsyncSession,
    spec: AudienceSpec,
    *,
    today: date,
    limit: int = 10,
    policy: Policy | None = None,
) -> tuple[int, list[Recipient]]:
    """How many recipients, and the first `limit` of them in `recipients`' order."""
    found = await recipients(session, spec, today=today, policy=policy)
    return len(found), found[: max(limit, 0)]


def _order_key(r: Recipient) -> tuple[str, str]:
    return r.unit or "", r.openid


def _unique(ordered: Iterable[Recipient]) -> list[Recipient]:
    """One recipient per openid: the first, i.e. the one of the first unit by name."""
    seen: set[str] = set()
    out = []
    for r in ordered:
        if r.openid not in seen:
            seen.add(r.openid)
            out.append(r)
    return out


def _ordered(session: AsyncSession, query: Any, unit_name: Any, openid: Any) -> Any:
    """ORDER BY unit name (none first), openid — by code point, as Python sorts them: the
    database sorts (no 100k-row sort in Python), PostgreSQL told to use the "C" collation
    (SQLite compares UTF-8 bytes, which is code-point order, already)."""
    keys = [func.coalesce(unit_name, ""), openid]
    if session.get_bind().dialect.name == "postgresql":
        keys = [key.collate("C") for key in keys]
    return query.order_by(*keys)


async def _resolve(session: AsyncSession, spec: AudienceSpec) -> UnitRef:
    assert spec.unit is not None
    found = await resolve_unit(session, spec.jurisdiction, spec.unit)
    if found.unit is not None:
        return found.unit
    from bot.imports.common import unresolved_message  # the importers' wording (lazy: heavy)

    raise AudienceError(unresolved_message(found))


async def _rows(session: AsyncSession, query: Any) -> Any:
    """Plain rows through the session's connection (no ORM result processing per row)."""
    return await (await session.connection()).execute(query)


# ---- liaisons and office ----------------------------------------------------------------


def line_params(line: LineProgress) -> dict[str, str]:
    """A line's figures as a reply shows them: period, target, done, remaining, percent, pace."""
    if line.target is None:
        blank = "应急献血" if line.standby else "—"
        return {
            "period": format_months(line.period.months),
            "target": blank,
            "done": _amount(line.done, line.measure),
            "remaining": "—",
            "percent": "—",
            "expected": "—",
        }
    return {
        "period": format_months(line.period.months),
        "target": _amount(line.target, line.measure),
        "done": _amount(line.done, line.measure),
        "remaining": _amount(line.remaining, line.measure),
        "percent": f"{line.percent}%" if line.percent is not None else "—",
        "expected": _amount(line.expected, line.measure),
    }


def _amount(value: Any, measure: str) -> str:
    return "—" if value is None else f"{number(value)}{measure}"


async def _liaison_units(
    session: AsyncSession, spec: AudienceSpec, place: JurisdictionRow, today: date
) -> dict[int, dict[str, str]] | None:
    """unit id → its parameters, for the units `month`/`behind` pick (None: no such filter)."""
    picked: dict[int, dict[str, str]] | None = None
    if spec.month is not None:
        picked = await _month_units(session, spec, place, spec.year or today.year, spec.month)
    if spec.behind:
        if (spec.month is not None and spec.month != today.month) or (
            spec.year is not None and spec.year != today.year
        ):
            raise AudienceError(
                f"进度落后按今天（{today:%Y年%m月%d日}）所在的月份计算；"
                f"不能同时指定{spec.year or today.year}年{spec.month}月"
            )
        lagging = await units_behind(session, spec.jurisdiction, today=today, limit=_UNLIMITED)
        behind = {line.unit_id: line_params(line) for line in lagging}
        picked = {u: p for u, p in behind.items() if picked is None or u in picked}
    return picked


async def _month_units(
    session: AsyncSession, spec: AudienceSpec, place: JurisdictionRow, year: int, month: int
) -> dict[int, dict[str, str]]:
    """Units with a line of month M's schedule, and their periods and targets.

    The lines `JurisdictionProgress.schedule_lines(M)` holds (SCHEDULE_KINDS, period contains
    M), with targets from the engine's `resolve_target` (a group heading sums its members, a
    share is taken of the headcount) — but without the donations query, which a month's
    targets do not need.
    """
    found = await load_year_lines(session, spec.jurisdiction, year)
    if not found.plan_found:
        raise AudienceError(f"{place.name}{year}年的献血计划还没有导入，无法按月份选择联络员")
    tree = await load_jurisdiction_units(session, spec.jurisdiction)
    by_unit: dict[int, list[tuple[LineRow, int | None]]] = {}
    for line in found.lines:
        if line.kind in SCHEDULE_KINDS and line.period.contains(month):
            target, _ = resolve_target(line, tree, found.lines)
            by_unit.setdefault(line.unit_id, []).append((line, target))
    return {unit_id: _month_params(lines) for unit_id, lines in by_unit.items()}


def _month_params(lines: Sequence[tuple[LineRow, int | None]]) -> dict[str, str]:
    """Several lines of one unit in a month: the periods, and the targets summed per measure."""
    sums: dict[str, int] = {}
    for line, target in lines:
        if target is not None:
            sums[line.measure] = sums.get(line.measure, 0) + target
    if sums:
        text = "、".join(f"{total}{measure}" for measure, total in sums.items())
    else:
        text = "应急献血" if any(line.kind == "emergency" for line, _ in lines) else "—"
    periods = dict.fromkeys(format_months(line.months) for line, _ in lines)
    return {"period": "、".join(periods), "target": text}


async def _bound(
    session: AsyncSession,
    spec: AudienceSpec,
    units: Mapping[int, Mapping[str, str]] | None,
    month: str,
) -> list[Recipient]:
    """Liaison or office bindings, of `units` only when given (with their parameters)."""
    if units is not None and not units:
        return []
    role = ROLES[spec.kind]
    query = (
        select(Binding.openid, Binding.unit_id, Unit.name)
        .outerjoin(Unit, Unit.id == Binding.unit_id)
        .where(Binding.jurisdiction == spec.jurisdiction, Binding.role == role)
    )
    if units is not None:
        query = query.where(Binding.unit_id.in_(sorted(units)))
    query = _ordered(session, query, Unit.name, Binding.openid)
    out = []
    for openid, unit_id, name in await _rows(session, query):
        params = {"unit": name or "", "month": month}
        if units is not None and unit_id is not None:
            params.update(units[unit_id])
        out.append(Recipient(openid, role, unit_id, name, params))
    return out


# ---- donors -------------------------------------------------------------------------------


async def _donors(
    session: AsyncSession,
    spec: AudienceSpec,
    unit: UnitRef | None,
    today: date,
    month: str,
    place: JurisdictionRow,
    policy: Policy | None,
) -> list[Recipient]:
    allowed = _eligibility(await _policy(place, policy), today) if spec.eligible else None
    query: Select[*tuple[Any, ...]] = (
        select(Binding.openid, Donor.unit_id, Unit.name, Donor.blood_type)
        .join(Donor, Donor.id == Binding.donor_id)
        .outerjoin(Unit, Unit.id == Donor.unit_id)
        .where(Binding.jurisdiction == spec.jurisdiction, Binding.role == "donor")
    )
    if unit is not None:
        query = query.where(Donor.unit_id == unit.id)
    if allowed is not None:
        history = _history(today)
        query = query.add_columns(history.c.last_wb, history.c.last_pl, history.c.pl_year)
        query = query.outerjoin(history, history.c.donor_id == Donor.id)
    query = _ordered(session, query, Unit.name, Binding.openid)
    consents: dict[str, str] | None = None
    if spec.blood_type:
        wanted = await consenting_openids(session, spec.jurisdiction, (spec.blood_type,))
        consents = dict.fromkeys(wanted, spec.blood_type)
    out: list[Recipient] = []
    for row in await _rows(session, query):
        openid, unit_id, name, blood = row[:4]
        if consents is not None:
            if openid not in consents:
                continue
            blood = consents.pop(openid)  # the consent's type, what the call is about
        params = {"unit": name or "", "month": month, "blood_type": blood or ""}
        if allowed is not None:
            verdict = allowed(row[4], row[5], row[6] or 0)
            if verdict is None:
                continue
            params.update(verdict)
        out.append(Recipient(openid, "donor", unit_id, name, params))
    if not consents or unit is not None:
        return out
    unbound = []  # consented without a donor binding: no unit, no donation on record
    for openid in sorted(consents):
        params = {"unit": "", "month": month, "blood_type": consents[openid]}
        if allowed is not None:
            params.update(allowed(None, None, 0) or {})
        unbound.append(Recipient(openid, "donor", None, None, params))
    return list(heapq.merge(out, unbound, key=_order_key))


def _history(today: date) -> Any:
    """Per donor, up to `today`: last whole-blood day, last platelets day, platelets this year.

    Kinds as the chat maps them (handlers/donor.py): anything not 「platelets」 is whole blood.
    """
    platelets = Donation.kind == "platelets"
    return (
        select(
            Donation.donor_id.label("donor_id"),
            func.max(case((~platelets, Donation.donated_at))).label("last_wb"),
            func.max(case((platelets, Donation.donated_at))).label("last_pl"),
            func.count(
                case((and_(platelets, Donation.donated_at >= date(today.year, 1, 1)), 1))
            ).label("pl_year"),
        )
        .where(Donation.donor_id.is_not(None), Donation.donated_at <= today)
        .group_by(Donation.donor_id)
        .subquery("history")
    )


async def _policy(place: JurisdictionRow, policy: Policy | None) -> Policy:
    if policy is None and place.policy:
        # the app's one cached loader of data/policies (lazy: handlers import the broadcast
        # code, which imports this module)
        from handlers.donor import shipped_policies

        policy = shipped_policies().get(place.policy)
    if policy is None or policy.eligibility is None:
        raise AudienceError(
            f"{place.name}没有配置献血间隔规则（献血者政策），无法筛选可再次献血的献血者；"
            "请在账号文件中为该辖区设置 policy"
        )
    return policy


Verdict = Callable[[date | None, date | None, int], dict[str, str] | None]


def _eligibility(policy: Policy, today: date) -> Verdict:
    """A per-donor test equal to asking `next_eligible` whether the kind of the donor's last
    donation may be given today — without calling it 100,000 times.

    `next_eligible` takes, per kind K, the latest of `last[A] + interval(A→K)` over the kinds
    A given before, so K is allowed today iff every `last[A]` is on or before the latest day
    that still allows K today. That day is found by asking `next_eligible` itself about one
    donation of kind A (a binary search: an earlier donation never allows less). The yearly
    platelet cap is the policy's `platelets_per_year`; age limits are not applied.
    """
    rules = policy.eligibility
    assert rules is not None
    # the latest allowed day of the last donation of kind `after` for giving `kind` today
    latest = {(a, k): _latest_allowing(policy, a, k, today) for a in KINDS for k in KINDS}
    wb_then_wb, pl_then_wb = (
        latest["whole_blood", "whole_blood"],
        latest["platelets", "whole_blood"],
    )
    wb_then_pl, pl_then_pl = latest["whole_blood", "platelets"], latest["platelets", "platelets"]
    cap = rules.platelets_per_year or 0
    whole_blood, platelets = DONATION_KINDS["whole_blood"], DONATION_KINDS["platelets"]
    never = {"last_donation": NO_RECORD, "donate_kind": whole_blood}

    def verdict(last_wb: date | None, last_pl: date | None, pl_year: int) -> dict[str, str] | None:
        if last_pl is not None and (last_wb is None or last_pl > last_wb):  # platelets last
            if last_pl > pl_then_pl or (last_wb is not None and last_wb > wb_then_pl):
                return None
            if cap and pl_year >= cap:
                return None
            return {"last_donation": _day(last_pl), "donate_kind": platelets}
        if last_wb is None:
            return never
        if last_wb > wb_then_wb or (last_pl is not None and last_pl > pl_then_wb):
            return None
        return {"last_donation": _day(last_wb), "donate_kind": whole_blood}

    return verdict


def _day(day: date) -> str:
    return f"{day.year}年{day.month}月{day.day}日"


def _latest_allowing(policy: Policy, after: Kind, kind: Kind, today: date) -> date:
    """The latest day a donation of kind `after` may have been given for `kind` to be allowed
    today, by `next_eligible`'s own answer (the day before the search range if none is)."""

    def allows(day: date) -> bool:
        probe = PolicyDonation(
            day, after, 400 if after == "whole_blood" else 0, 1.0 if after == "platelets" else 0
        )
        return next_eligible(policy, [probe], today=today)[kind] == today

    low, high = today - timedelta(days=366 * _PROBE_YEARS), today
    if allows(high):
        return high
    if not allows(low):
        return low - timedelta(days=1)
    while (high - low).days > 1:  # invariant: allows(low), not allows(high)
        middle = low + timedelta(days=(high - low).days // 2)
        low, high = (middle, high) if allows(middle) else (low, middle)
    return low
