"""Schema of the benefit sections: honours, their counting, perks, and eligibility."""

from __future__ import annotations

from bot.policy.model import (
    KINDS,
    Eligibility,
    HonourCounting,
    HonourRule,
    Interval,
    Kind,
    Perk,
)
from bot.policy.reader import Table

HONOUR_MEASURES = ("fengxian_count", "donations", "volunteer_hours", "awarded")
PERK_KEYS: tuple[str, ...] = (
    "id",
    "name",
    "kind",
    "text",
    "clause",
    "citation",
    "requires_honours",
)
PERK_KEYS += ("days_min", "days_max", "yuan_min", "yuan_max")
PERK_KINDS = ("leave", "subsidy", "parks", "transit", "outpatient", "checkup", "other")


def honours(t: Table) -> tuple[HonourRule, ...]:
    out: list[HonourRule] = []
    for h in t.tables("honours"):
        h.expect(("id", "name", "scheme", "measure", "threshold", "clause", "citation"))
        if h.data.get("id") in {o.id for o in out}:
            raise h.error("id", f"duplicate honour id {h.data['id']!r}")
        measure = h.choice("measure", HONOUR_MEASURES)
        threshold = h.opt_int("threshold", minimum=1)
        if (threshold is None) != (measure == "awarded"):
            raise h.error("threshold", 'required, except for measure = "awarded" honours')
        out.append(
            HonourRule(
                id=h.req_str("id"),
                name=h.req_str("name"),
                scheme=h.req_str("scheme"),
                measure=measure,  # type: ignore[arg-type]  # checked by choice()
                threshold=threshold,
                clause=h.req_str("clause"),
                citation=h.req_str("citation"),
            )
        )
        h.close()
    return tuple(out)


def counting(t: Table) -> HonourCounting | None:
    c = t.table("honour_counting")
    if c is None:
        return None
    counting = HonourCounting(
        c.req_int("whole_blood_ml_per_count", minimum=1),
        c.req_int("platelet_units_per_count", minimum=1),
    )
    c.close()
    return counting


def _range(t: Table, low_key: str, high_key: str) -> tuple[int, int] | None:
    low, high = t.opt_int(low_key), t.opt_int(high_key)
    if low is None and high is None:
        return None
    if low is None or high is None or high < low:
        raise t.error(high_key if low is not None else low_key, "give both ends, min ≤ max")
    return (low, high)


def perks(t: Table, honours: tuple[HonourRule, ...]) -> tuple[Perk, ...]:
    known = {h.id for h in honours}
    out: list[Perk] = []
    for p in t.tables("perks"):
        p.expect(PERK_KEYS)
        requires = p.str_list("requires_honours")
        for ident in requires:
            if ident not in known:
                raise p.error("requires_honours", f"no honour with id {ident!r}")
        out.append(
            Perk(
                id=p.req_str("id"),
                name=p.req_str("name"),
                kind=p.choice("kind", PERK_KINDS),
                text=p.req_str("text"),
                clause=p.req_str("clause"),
                citation=p.req_str("citation"),
                requires_honours=requires,
                days=_range(p, "days_min", "days_max"),
                amount_yuan=_range(p, "yuan_min", "yuan_max"),
            )
        )
        p.close()
    return tuple(out)


def _kind(t: Table, key: str) -> Kind:
    return "platelets" if t.choice(key, KINDS) == "platelets" else "whole_blood"


def eligibility(t: Table) -> Eligibility | None:
    e = t.table("eligibility")
    if e is None:
        return None
    intervals = []
    for i in e.tables("intervals"):
        i.expect(("id", "after", "next", "months", "weeks", "days", "clause"))
        months = i.opt_int("months") or 0
        days = (i.opt_int("weeks") or 0) * 7 + (i.opt_int("days") or 0)
        if months == 0 and days == 0:
            raise i.error("months", "missing: give months, weeks or days")
        ident = i.req_str("id")
        intervals.append(
            Interval(ident, _kind(i, "after"), _kind(i, "next"), months, days, i.req_str("clause"))
        )
        i.close()
    min_age = e.req_int("min_age", minimum=16)
    max_age = e.req_int("max_age", minimum=min_age)
    eligibility = Eligibility(
        intervals=tuple(intervals),
        platelets_per_year=e.opt_int("platelets_per_year", minimum=1),
        min_age=min_age,
        max_age=max_age,
        repeat_donor_max_age=e.req_int("repeat_donor_max_age", minimum=max_age),
        clause=e.req_str("clause"),
        citation=e.req_str("citation"),
    )
    e.close()
    return eligibility
