"""The schema: each section of a policy file read into its dataclass, with its checks."""

from __future__ import annotations

import itertools
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.policy import benefit_sections as benefits
from bot.policy.model import (
    RELATIONS,
    Contact,
    DonorRule,
    DonorRules,
    Effective,
    FamilyRule,
    Gap,
    Measure,
    Multiple,
    Policy,
    Pool,
    Source,
)
from bot.policy.reader import Table

INHERITED = ("eligibility", "honour_counting", "honours", "perks")  # from base files
MULTIPLE_KEYS = ("multiplier", "up_to", "window_years", "after_window_multiplier")
BASE_KEYS = ("id", "base", "name", "source", *INHERITED)
POLICY_KEYS = (
    "id", "name", "inherits", "jurisdictions", "timezone", "source", "effective", "contact",
    "conversion", "donor", "not_configured", "family", *INHERITED,
)  # fmt: skip


def parse_base(t: Table) -> None:
    """Validate a base file (shared defaults such as GB 18467-2011); policies inherit it."""
    t.expect(BASE_KEYS)
    t.req_str("id")
    t.opt_bool("base", True)
    t.req_str("name")
    _source(t)
    honours = benefits.honours(t)
    benefits.counting(t)
    benefits.perks(t, honours)
    benefits.eligibility(t)
    t.close()


def parse_policy(t: Table, file: Path) -> Policy:
    t.expect(POLICY_KEYS)
    ident = t.req_str("id")
    t.str_list("inherits")
    name = t.req_str("name")
    source = _source(t)
    effective = _effective(t)
    contact = _contact(t)
    conversion = t.table("conversion")
    platelet_ml = conversion.opt_int("platelet_unit_ml", minimum=1) if conversion else None
    if conversion:
        conversion.close()
    donor = _donor(t)
    reason = t.opt_str("not_configured")
    if donor is None and not reason:
        raise t.error("donor", "missing: give [donor] rules or a not_configured reason")
    if donor is not None and reason:
        raise t.error("not_configured", "a policy with [donor] rules cannot be not_configured")
    honours = benefits.honours(t)
    policy = Policy(
        id=ident,
        name=name,
        file=file,
        jurisdictions=t.str_list("jurisdictions"),
        timezone=_timezone(t),
        source=source,
        effective=effective,
        contact=contact,
        platelet_unit_ml=platelet_ml,
        donor=donor,
        family=_family(t),
        not_configured_reason=reason,
        honours=honours,
        counting=benefits.counting(t),
        perks=benefits.perks(t, honours),
        eligibility=benefits.eligibility(t),
    )
    if policy.counting is None and any(h.measure == "fengxian_count" for h in policy.honours):
        raise t.error("honour_counting", "missing: 奉献奖 honours need [honour_counting]")
    t.close()
    return policy


def _timezone(t: Table) -> str:
    name = t.opt_str("timezone", "Asia/Shanghai")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise t.error("timezone", f"unknown timezone {name!r}") from exc
    return name


def _source(t: Table) -> Source:
    s = t.table("source", required=True)
    assert s is not None
    source = Source(
        title=s.req_str("title"),
        issuer=s.req_str("issuer"),
        year=s.req_int("year", minimum=1949),
        citation=s.req_str("citation"),
        verified=s.opt_bool("verified", False),
        note=s.opt_str("note"),
    )
    s.close()
    return source


def _effective(t: Table) -> Effective:
    e = t.table("effective", required=True)
    assert e is not None
    effective = Effective(start=e.opt_date("from"), end=e.opt_date("until"), note=e.opt_str("note"))
    e.close()
    if effective.start is None and not effective.note:
        raise e.error("from", "missing: give the date or a note saying why it is unknown")
    if effective.start and effective.end and effective.end < effective.start:
        raise e.error("until", "ends before it starts")
    return effective


def _contact(t: Table) -> Contact:
    c = t.table("contact", required=True)
    assert c is not None
    contact = Contact(name=c.req_str("name"), phone=c.opt_str("phone"), note=c.opt_str("note"))
    c.close()
    return contact


def _multiple(t: Table, *, required: bool) -> Multiple | None:
    """Read the multiplier keys, the last keys of their table: closes `t` before checking."""
    multiplier = t.opt_int("multiplier", minimum=1)
    up_to = t.opt_bool("up_to", False)
    years = t.opt_int("window_years", minimum=1)
    after = t.opt_int("after_window_multiplier", minimum=0)
    t.close()  # a misspelt key explains a "missing" one better than the check below would
    if multiplier is None:
        if required:
            raise t.error("multiplier", "missing")
        for key, value in (
            ("up_to", up_to or None),
            ("window_years", years),
            ("after_window_multiplier", after),
        ):
            if value is not None:
                raise t.error(key, "only meaningful with a multiplier")
        return None
    if (years is None) != (after is None):
        key = "after_window_multiplier" if after is None else "window_years"
        raise t.error(key, "missing: window_years and after_window_multiplier go together")
    return Multiple(multiplier, up_to, years, after)


def _donor(t: Table) -> DonorRules | None:
    d = t.table("donor")
    if d is None:
        return None
    measure: Measure = (
        "count"
        if d.choice("measure", ("volume_ml", "count"), "volume_ml") == "count"
        else "volume_ml"
    )
    rules: list[tuple[DonorRule, Table]] = []
    for r in d.tables("rules"):
        r.expect(("clause", "min", "max", "unlimited", *MULTIPLE_KEYS))
        clause = r.req_str("clause")
        low = r.req_int("min")
        high = r.opt_int("max")
        unlimited = r.opt_bool("unlimited", False)
        multiple = _multiple(r, required=False)
        if high is not None and high < low:
            raise r.error("max", f"max {high} is below min {low}")
        if unlimited == (multiple is not None):
            raise r.error("unlimited", "a rule is either unlimited = true or has a multiplier")
        rules.append((DonorRule(clause, low, high, unlimited, multiple), r))
    d.close()
    if not rules:
        raise d.error("rules", "missing: at least one [[donor.rules]]")
    ordered = sorted(rules, key=lambda pair: pair[0].low)
    for (before, _), (after, table) in itertools.pairwise(ordered):
        if before.high is None or after.low <= before.high:
            upper = "∞" if before.high is None else before.high
            raise table.error(
                "min", f"overlaps another rule ({before.low}–{upper} vs {after.low}–…)"
            )
    return DonorRules(
        measure, tuple(r for r, _ in ordered), uncovered_bands(measure, [r for r, _ in ordered])
    )


def uncovered_bands(measure: Measure, rules: list[DonorRule]) -> tuple[Gap, ...]:
    """Bands of [1, ∞) that no rule covers (rules are sorted and do not overlap)."""
    gaps: list[Gap] = []
    next_uncovered: int | None = 1
    for rule in rules:
        assert next_uncovered is not None
        if rule.low > next_uncovered:
            gaps.append(Gap(measure, next_uncovered, rule.low - 1))
        next_uncovered = None if rule.high is None else max(next_uncovered, rule.high + 1)
        if next_uncovered is None:
            break
    if next_uncovered is not None:
        gaps.append(Gap(measure, next_uncovered, None))
    return tuple(gaps)


def _family(t: Table) -> FamilyRule | None:
    f = t.table("family")
    if f is None:
        return None
    f.expect(("clause", "relations", "relations_note", "pool", *MULTIPLE_KEYS))
    clause, note = f.req_str("clause"), f.opt_str("relations_note")
    relations = f.str_list("relations", RELATIONS)
    pool: Pool = "each" if f.choice("pool", ("shared", "each")) == "each" else "shared"
    multiple = _multiple(f, required=True)
    assert multiple is not None
    if not relations:
        raise f.error("relations", "missing: name at least one relation")
    return FamilyRule(clause, relations, pool, multiple, note)
