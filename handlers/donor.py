"""Donor conversations: binding, emergency-call consent, free-blood answers, records, honours.

Every message is read once by `bot.donor_intents.parse_donor`. Anyone may ask the
general questions (「献了600毫升能免费用多少血」「献血有什么好处」「多久能献一次」); a
bound donor also gets their own records and entitlement. Answers come from the
jurisdiction's policy (`Settings.jurisdictions[code].policy`, bot/policy) with the clause
applied and its citation; a policy gap is reported with whom to ask, never guessed.
"""

from __future__ import annotations

import functools
from datetime import date
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from bot import policy as engine
from bot.clock import Clock
from bot.dispatcher import HelpEntry, Router
from bot.donor_intents import DonorIntent, DonorQuery
from bot.donors import CodeSender, LogCodeSender, confirm_code, start_verification
from bot.policy import MissingFigure, Policy, load_policies, quick_answer
from bot.policy.model import RELATIONS, Kind
from bot.render import Renderer
from bot.settings import Settings
from bot.state import State
from bot.storage import Storage
from bot.users import User
from bot.wechat.message import Message
from models.donations import BloodUse, Donor
from models.donations import Donation as DonationRow
from models.donor_extras import donor_donations, donor_ledger, record_consent, withdraw_consent

router = Router(name=__name__)
ANYONE = frozenset({"anonymous", "liaison", "donor", "office"})
DONOR = frozenset({"donor"})
RECORDS_PAGE = 10
POLICY_DIR = Path(__file__).resolve().parent.parent / "data" / "policies"


@functools.cache
def shipped_policies() -> dict[str, Policy]:
    """The rule sets of data/policies, loaded and validated once per process."""
    return load_policies(POLICY_DIR)


_DEV_SENDER = LogCodeSender()


def needs(message: Message, data: dict[str, Any]) -> dict[str, Any]:
    """Supplies `policy` (the jurisdiction's, or None) and `code_sender` to donor handlers.

    The app may put `policies` and `code_sender` in the dispatcher data; without them the
    shipped policies and the development (log) sender are used.
    """
    policy_id = data["settings"].jurisdictions[data["jurisdiction"]].policy
    policies = data.get("policies") or shipped_policies()
    return {
        "policy": policies.get(policy_id) if policy_id else None,
        "code_sender": data.get("code_sender") or _DEV_SENDER,
    }


@router.message(
    DonorIntent("bind_donor"),
    help=HelpEntry("绑定献血者", "献血者核验身份后查询本人献血记录和用血权益", ANYONE),
)
async def ask_identity(render: Renderer) -> str:
    """Asks for 「身份证号 姓名」 to start donor binding."""
    return render("donor_bind_ask")


@router.message(DonorIntent("verify"), needs)
async def verify_identity(
    message: Message,
    donor_query: DonorQuery,
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    code_sender: CodeSender,
    render: Renderer,
    jurisdiction: str,
) -> str:
    """Matches ID number + name to a donor record and sends a one-time code."""
    result = await start_verification(
        session,
        storage,
        settings,
        code_sender,
        jurisdiction=jurisdiction,
        openid=message.source,
        id_number=donor_query.id_number,
        name=donor_query.name,
    )
    return render("donor_bind_result", r=result)


@router.message(DonorIntent("code"))
async def verify_code(
    message: Message,
    donor_query: DonorQuery,
    session: AsyncSession,
    storage: Storage,
    settings: Settings,
    render: Renderer,
    jurisdiction: str,
) -> str:
    """Takes the 6-digit code and binds the donor."""
    result = await confirm_code(
        session,
        storage,
        settings,
        jurisdiction=jurisdiction,
        openid=message.source,
        code=donor_query.code,
    )
    return render("donor_bind_result", r=result)


@router.message(
    DonorIntent("consent", "blood_type"),
    help=HelpEntry("我愿意接收应急献血通知", "血液告急时接收应急献血通知（回复「退订」取消）"),
)
async def consent(
    message: Message,
    donor_query: DonorQuery,
    user: User,
    session: AsyncSession,
    state: State,
    clock: Clock,
    render: Renderer,
    jurisdiction: str,
) -> str:
    """Stores consent to emergency calls with the blood type (asking for it if unknown)."""
    current = await state.get()
    if donor_query.intent == "blood_type" and not current.get("consent_pending"):
        return render("donor_blood_type_noted")
    blood_type = donor_query.blood_type
    if not blood_type and user.donor_id is not None:
        donor = await session.get(Donor, user.donor_id)
        blood_type = (donor.blood_type or "") if donor else ""
    if not blood_type:
        await state.set({**current, "consent_pending": True})
        return render("donor_consent_ask_type")
    await state.set({k: v for k, v in current.items() if k != "consent_pending"})
    await record_consent(session, jurisdiction, message.source, blood_type, clock.now())
    return render("donor_consent_ok", blood_type=blood_type)


@router.message(DonorIntent("withdraw"))
async def withdraw(
    message: Message, session: AsyncSession, clock: Clock, render: Renderer, jurisdiction: str
) -> str:
    """「退订」: withdraws the emergency-call consent."""
    withdrawn = await withdraw_consent(session, jurisdiction, message.source, clock.now())
    return render("donor_consent_withdrawn", withdrawn=withdrawn)


@router.message(DonorIntent("bad_value"))
async def bad_value(render: Renderer) -> str:
    """「献了-200毫升」「献了100000毫升」: a figure that cannot be right."""
    return render("donor_bad_value")


@router.message(
    DonorIntent("quick"),
    needs,
    help=HelpEntry("献了600毫升能免费用多少血", "按本地政策估算免费用血量"),
)
async def quick(
    donor_query: DonorQuery, policy: Policy | None, render: Renderer, today: date
) -> str:
    """Answers a quick calculation from the figures in the message."""
    if policy is None:
        return render("donor_no_policy")
    try:
        result = quick_answer(policy, donor_query.volume_ml, donor_query.count, today=today)
    except MissingFigure as missing:
        return render("donor_ask_volume", figure=missing.figure, count=donor_query.count)
    return render("donor_entitlement", e=result, quick=True, q=donor_query, policy=policy)


@router.message(DonorIntent("others_records"))
async def others_records(render: Renderer) -> str:
    """A donor sees only their own records."""
    return render("donor_not_yours")


@router.message(
    DonorIntent("benefits", "interval", "honour_rules"),
    needs,
    help=HelpEntry("献血有什么好处", "本地献血者权益、荣誉和献血间隔"),
)
async def general(donor_query: DonorQuery, policy: Policy | None, render: Renderer) -> str:
    """General policy questions anyone may ask: benefits, intervals, how honours are earned."""
    if policy is None:
        return render("donor_no_policy")
    return render("donor_general", topic=donor_query.intent, policy=policy)


@router.message(
    DonorIntent("records", "entitlement", "family", "honour_gap", "perks", "next_donation"),
    needs,
    help=HelpEntry("我的献血记录", "本人献血记录、可免费用血量、下次可献血时间、福利", DONOR),
)
async def own_question(
    donor_query: DonorQuery,
    user: User,
    policy: Policy | None,
    session: AsyncSession,
    state: State,
    render: Renderer,
    today: date,
) -> str:
    """A donor's own records, entitlement, honours, perks or next donation date."""
    if user.donor_id is None:
        return render("donor_unbound", intent=donor_query.intent)
    rows = await donor_donations(session, user.donor_id)
    if donor_query.intent == "records":
        pages = [
            render("donor_records", rows=rows[i : i + RECORDS_PAGE], start=i, total=len(rows))
            for i in range(0, max(len(rows), 1), RECORDS_PAGE)
        ]
        await state.push_pages(pages[1:])
        return pages[0]
    if policy is None:
        return render("donor_no_policy")
    donations = [_donation(r) for r in rows]
    if donor_query.intent == "next_donation":
        donor = await session.get(Donor, user.donor_id)
        birth = donor.birth_date if donor else None
        dates = engine.next_eligible(policy, donations, today=today, birth_date=birth)
        return render("donor_next", dates=dates, policy=policy, today=today)
    if donor_query.intent in ("honour_gap", "perks"):
        earned = engine.honours(policy, donations)
        return render(
            "donor_honours",
            intent=donor_query.intent,
            earned=earned,
            perks=engine.perks(policy, earned),
            asked=donor_query.medal,
            policy=policy,
        )
    ledger = [_ledger(u) for u in await donor_ledger(session, user.donor_id)]
    if donor_query.intent == "family":
        fam = engine.family_entitlement(policy, donations, ledger, today=today)
        return render("donor_family", f=fam, relation=donor_query.relation)
    own = engine.entitlement(policy, donations, ledger, today=today)
    return render("donor_entitlement", e=own, quick=False, q=donor_query, policy=policy)


def _donation(row: DonationRow) -> engine.Donation:
    kind: Kind = "platelets" if row.kind == "platelets" else "whole_blood"
    return engine.Donation(row.donated_at, kind, row.volume_ml, row.therapeutic_units)


def _ledger(use: BloodUse) -> engine.LedgerEntry:
    # an entry of a relation the engine does not know still reduces the family pool
    relation = use.relation if use.relation in ("self", *RELATIONS) else "spouse"
    return engine.LedgerEntry(use.used_at, use.volume_ml, relation)
