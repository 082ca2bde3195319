"""Donor binding over signed XML: ID number + name, a one-time code, five failures lock.

Synthetic donors only (「测试甲」 and valid-checksum ID numbers made up here).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import date
from typing import Any

import pytest
from sqlalchemy import select

from bot.app import SESSIONS, WEBHOOK
from bot.donors import LogCodeSender
from bot.imports.common import ensure_jurisdictions
from bot.privacy import id_number_valid, keyed_hash, mask_name
from models.donations import BloodUse, Donation, Donor
from models.donor_extras import EmergencyConsent  # registers the table for test_migrations
from models.users import Binding

_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)


def id_number(first17: str) -> str:
    """A synthetic ID number with a correct GB 11643 check digit."""
    total = sum(int(d) * w for d, w in zip(first17, _WEIGHTS, strict=True))
    return first17 + "10X98765432"[total % 11]


DONOR_ID = id_number("53012819900307123")
DONOR_NAME = "测试甲"
BAD_CHECK = DONOR_ID[:17] + ("0" if DONOR_ID[17] != "0" else "1")

Bot = Any


async def seed_donor(
    bot: Bot,
    code: str = "luquan",
    *,
    number: str = DONOR_ID,
    name: str = DONOR_NAME,
    donations: Sequence[tuple[date, str, int, float]] = (),
    ledger: Sequence[tuple[date, int, str]] = (),
    blood_type: str | None = "O",
    birth: date | None = None,
) -> int:
    """A donor row (hashes only) with donations and ledger entries; returns its id."""
    key = bot.settings.id_hash_key.get_secret_value()
    async with bot.app[SESSIONS]() as s:
        await ensure_jurisdictions(s, bot.settings, [code])
        donor = Donor(
            jurisdiction=code,
            id_hash=keyed_hash(key, number),
            name_hash=keyed_hash(key, name),
            name_masked=mask_name(name),
            blood_type=blood_type,
            birth_date=birth,
        )
        s.add(donor)
        await s.flush()
        for n, (day, kind, ml, units) in enumerate(donations):
            s.add(
                Donation(
                    jurisdiction=code,
                    record_id=f"T{donor.id}-{n}",
                    donated_at=day,
                    donor_id=donor.id,
                    kind=kind,
                    volume_ml=ml,
                    therapeutic_units=units,
                    site="示意献血屋" if n % 2 else None,
                )
            )
        for day, ml, relation in ledger:
            s.add(BloodUse(donor_id=donor.id, used_at=day, volume_ml=ml, relation=relation))
        await s.commit()
        return donor.id


def with_sender(bot: Bot) -> LogCodeSender:
    sender = LogCodeSender()
    bot.app[WEBHOOK].base_data["code_sender"] = sender
    return sender


async def bind_donor(bot: Bot, openid: str = "o_donor", code: str = "luquan") -> None:
    """The whole conversation, as a helper for the other donor tests."""
    sender = with_sender(bot)
    await bot.say(code, "绑定献血者", openid=openid)
    await bot.say(code, f"{DONOR_ID} {DONOR_NAME}", openid=openid)
    sent = sender.last_code(openid)
    assert sent is not None
    reply = await bot.say(code, sent, openid=openid)
    assert reply is not None and "绑定成功" in reply


MakeBot = Callable[..., Awaitable[Bot]]


async def test_binding_asks_for_identity_then_sends_a_code_and_binds(
    make_bot: MakeBot, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    donor_id = await seed_donor(bot)
    sender = with_sender(bot)
    ask = await bot.say("luquan", "绑定献血者", openid="o_a")
    assert ask is not None and "身份证号 姓名" in ask
    with caplog.at_level(logging.INFO):
        sent = await bot.say("luquan", f"身份证号 {DONOR_ID} 姓名 {DONOR_NAME}", openid="o_a")
    assert sent is not None and "验证码已发送" in sent and "测*甲" in sent
    assert DONOR_NAME not in sent and DONOR_ID not in sent
    code = sender.last_code("o_a")
    assert code is not None and len(code) == 6
    logged = caplog.text + "".join(str(r.__dict__) for r in caplog.records)
    assert code not in logged and DONOR_ID not in logged and DONOR_NAME not in logged
    done = await bot.say("luquan", code, openid="o_a")
    assert done is not None and "绑定成功" in done and DONOR_NAME not in done
    async with bot.app[SESSIONS]() as s:
        binding = await s.scalar(select(Binding).where(Binding.openid == "o_a"))
    assert binding is not None and binding.role == "donor" and binding.donor_id == donor_id
    again = await bot.say("luquan", code, openid="o_a")
    assert again is not None and "没有等待验证" in again  # a code works once


async def test_a_wrong_check_digit_is_explained(make_bot: MakeBot) -> None:
    bot = await make_bot()
    await seed_donor(bot)
    assert not id_number_valid(BAD_CHECK)
    reply = await bot.say("luquan", f"{BAD_CHECK} {DONOR_NAME}", openid="o_b")
    assert reply is not None and "校验位不对" in reply and BAD_CHECK not in reply


async def test_name_must_match_and_five_failures_lock(make_bot: MakeBot) -> None:
    bot = await make_bot()
    await seed_donor(bot)
    sender = with_sender(bot)
    first = await bot.say("luquan", f"{DONOR_ID} 测试乙", openid="o_c")
    assert first is not None and "没有找到" in first and "4次" in first and "测试乙" not in first
    for _ in range(3):
        await bot.say("luquan", f"{DONOR_ID} 测试乙", openid="o_c")
    locked = await bot.say("luquan", f"{DONOR_ID} 测试乙", openid="o_c")
    assert locked is not None and "暂停1小时" in locked
    # locked: even the right name no longer sends a code
    still = await bot.say("luquan", f"{DONOR_ID} {DONOR_NAME}", openid="o_c")
    assert still is not None and "暂停1小时" in still and sender.sent == []
    other = await bot.say("luquan", f"{DONOR_ID} {DONOR_NAME}", openid="o_other")
    assert other is not None and "验证码已发送" in other  # the lock is per openid


async def test_wrong_codes_count_as_failures(make_bot: MakeBot) -> None:
    bot = await make_bot()
    await seed_donor(bot)
    sender = with_sender(bot)
    await bot.say("luquan", f"{DONOR_ID} {DONOR_NAME}", openid="o_d")
    right = sender.last_code("o_d")
    wrong = "000000" if right != "000000" else "111111"
    reply = await bot.say("luquan", wrong, openid="o_d")
    assert reply is not None and "验证码不正确" in reply and "4次" in reply
    for _ in range(4):
        reply = await bot.say("luquan", wrong, openid="o_d")
    assert reply is not None and "暂停1小时" in reply
    assert right is not None
    after = await bot.say("luquan", right, openid="o_d")
    assert after is not None and "暂停1小时" in after


async def test_a_donor_of_another_jurisdiction_does_not_match(make_bot: MakeBot) -> None:
    bot = await make_bot()
    await seed_donor(bot, "rugao")
    reply = await bot.say("luquan", f"{DONOR_ID} {DONOR_NAME}", openid="o_e")
    assert reply is not None and "没有找到" in reply


async def test_consent_table_is_registered() -> None:
    assert EmergencyConsent.__tablename__ == "emergency_consents"


async def test_a_missing_name_is_asked_for(make_bot: MakeBot) -> None:
    bot = await make_bot()
    reply = await bot.say("luquan", DONOR_ID, openid="o_f")
    assert reply is not None and "还需要您的姓名" in reply and DONOR_ID not in reply


async def test_the_development_sender_masks_the_code_unless_told(
    caplog: pytest.LogCaptureFixture,
) -> None:
    masked, shown = LogCodeSender(), LogCodeSender(reveal=True)
    with caplog.at_level(logging.INFO, logger="bot.donors"):
        await masked.send_code(jurisdiction="luquan", donor_id=1, openid="o_g", code="123456")
        assert [r.__dict__["code"] for r in caplog.records] == ["******"]
        await shown.send_code(jurisdiction="luquan", donor_id=1, openid="o_g", code="654321")
    assert caplog.records[-1].__dict__["code"] == "654321"
    assert masked.last_code("o_g") == "123456" and "o_g" not in caplog.text
