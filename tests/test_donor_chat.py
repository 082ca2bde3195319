"""Donor conversations over signed XML: quick answers, bound donors, consent, bad input.

Policies come from data/policies (禄劝 luquan-2016: ≥1000 ml lifetime, <800 ml 3× within
5 years, 800–999 ml uncovered; 如皋 jiangsu-2017). Synthetic donors only.
"""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy import select
from test_donor_binding import bind_donor, seed_donor

from bot.app import SESSIONS
from bot.donor_intents import DonorIntent, chinese_number, parse_donor
from bot.users import User
from bot.wechat.message import Message
from models.donor_extras import EmergencyConsent, consenting_openids, erase_consent


@pytest.mark.parametrize(
    ("text", "intent", "volume", "count"),
    [
        ("我能免费用多少血", "entitlement", None, None),
        ("我家人用血能报销吗", "family", None, None),
        ("献了600毫升能免费用多少血", "quick", 600, None),
        ("献了六百毫升", "quick", 600, None),
        ("献了400cc", "quick", 400, None),
        ("献过两次400的呢", "quick", 800, 2),
        ("献了两次", "quick", None, 2),
        ("献血有什么好处", "benefits", None, None),
        ("多久能献一次", "interval", None, None),
        ("下次什么时候能献血", "next_donation", None, None),
        ("奉献奖怎么评", "honour_rules", None, None),
        ("离金奖还差几次", "honour_gap", None, None),
        ("我的献血记录", "records", None, None),
        ("我有什么福利", "perks", None, None),
        ("附近哪里能献血", "sites", None, None),
        ("献血屋在哪", "sites", None, None),
        ("我愿意接收应急献血通知", "consent", None, None),
        ("退订", "withdraw", None, None),
        ("绑定献血者", "bind_donor", None, None),
        ("献了-200毫升", "bad_value", None, None),
        ("献了100000毫升", "bad_value", None, None),
        ("查一下张三的献血记录", "others_records", None, None),
        ("这个月还差多少", "none", None, None),
    ],
)
def test_donor_parser(text: str, intent: str, volume: int | None, count: int | None) -> None:
    q = parse_donor(text)
    assert (q.intent, q.volume_ml, q.count) == (intent, volume, count)


def test_chinese_numbers() -> None:
    assert [chinese_number(t) for t in ("六百", "两", "一千二", "十五", "-200")] == [
        600, 2, 1200, 15, -200,
    ]  # fmt: skip


async def policed(make_bot: Any) -> Any:
    bot = await make_bot()
    bot.settings.jurisdictions["luquan"].policy = "luquan-2016"
    bot.settings.jurisdictions["rugao"].policy = "jiangsu-2017"
    return bot


async def test_quick_answer_shows_the_rule_and_its_source(make_bot: Any) -> None:
    bot = await policed(make_bot)
    reply = await bot.say("luquan", "献了600毫升能免费用多少血")
    assert reply is not None and "1800毫升" in reply and "3倍" in reply
    assert "出处：《禄劝彝族苗族自治县无偿献血工作实施方案》" in reply


async def test_a_policy_gap_is_reported_never_guessed(make_bot: Any) -> None:
    bot = await policed(make_bot)
    reply = await bot.say("luquan", "献过两次400的呢")  # 800 ml: 禄劝 leaves 800–999 undefined
    assert reply is not None and "没有覆盖" in reply and "不做猜测" in reply
    assert "禄劝县无偿献血工作领导小组办公室" in reply
    assert "毫升，" not in reply.split("没有覆盖")[1][:5]


async def test_missing_volume_is_asked_back(make_bot: Any) -> None:
    bot = await policed(make_bot)
    reply = await bot.say("luquan", "献了两次")
    assert reply is not None and "每次献了多少毫升" in reply


@pytest.mark.parametrize("text", ["献了-200毫升", "献了100000毫升"])
async def test_absurd_volumes_get_a_polite_reply(make_bot: Any, text: str) -> None:
    bot = await policed(make_bot)
    reply = await bot.say("luquan", text)
    assert reply is not None and "看起来不太对" in reply


async def test_without_a_policy_the_bot_says_whom_to_ask(make_bot: Any) -> None:
    bot = await make_bot()
    reply = await bot.say("qingpu", "献了600毫升能免费用多少血")
    assert reply is not None and "还没有录入" in reply


async def test_general_questions(make_bot: Any) -> None:
    bot = await policed(make_bot)
    benefits = await bot.say("luquan", "献血有什么好处")
    assert benefits is not None and "终生享受免费用血" in benefits and "献血休假" in benefits
    interval = await bot.say("luquan", "多久能献一次")
    assert interval is not None and "全血献血间隔不少于6个月" in interval
    honours = await bot.say("luquan", "奉献奖怎么评")
    assert honours is not None and "无偿献血奉献奖金奖" in honours


async def test_own_questions_need_a_donor_binding(make_bot: Any) -> None:
    bot = await policed(make_bot)
    reply = await bot.say("luquan", "我的献血记录", openid="o_anon")
    assert reply is not None and "绑定献血者" in reply


async def test_records_are_paged_ten_at_a_time(make_bot: Any) -> None:
    bot = await policed(make_bot)
    days = [date(2014 + n // 2, 1 + 6 * (n % 2), 10) for n in range(12)]
    await seed_donor(bot, donations=[(d, "whole_blood", 200, 0.0) for d in days])
    await bind_donor(bot)
    first = await bot.say("luquan", "我的献血记录", openid="o_donor")
    assert first is not None and "共12次" in first and "2014-01-10 全血 200毫升" in first
    assert "回复「更多」" in first and "11." not in first
    rest = await bot.say("luquan", "更多", openid="o_donor")
    assert rest is not None and "11. 2019-01-10" in rest and "12. 2019-07-10" in rest


async def test_own_entitlement_subtracts_the_ledger(make_bot: Any) -> None:
    bot = await policed(make_bot)
    donations = [
        (date(2025, 1, 5), "whole_blood", 200, 0.0),
        (date(2025, 9, 1), "whole_blood", 200, 0.0),
    ]
    await seed_donor(bot, donations=donations, ledger=[(date(2026, 1, 2), 300, "self")])
    await bind_donor(bot)
    reply = await bot.say("luquan", "我能免费用多少血", openid="o_donor")
    # 400 ml < 800 ml: 3× within 5 years = 1200 ml, 300 ml used
    assert reply is not None and "1200毫升" in reply and "已用300毫升，还剩900毫升" in reply
    assert "2030-01-06起" in reply  # the first donation's window ends on 2030-01-05
    assert "· 2025-01-05 献血计200毫升 ×3（至2030-01-05，之后×1）" in reply
    family = await bot.say("luquan", "我家人用血能报销吗", openid="o_donor")
    assert family is not None and "配偶" in family and "合计可免费用血400毫升" in family


async def test_honours_perks_and_next_donation(make_bot: Any) -> None:
    bot = await policed(make_bot)
    donations = [
        (date(2020 + n // 2, 1 + 6 * (n % 2), 1), "whole_blood", 400, 0.0) for n in range(12)
    ]
    await seed_donor(bot, donations=donations, birth=date(1990, 3, 7))
    await bind_donor(bot)
    gold = await bot.say("luquan", "离金奖还差几次", openid="o_donor")
    # 12 × 400 ml = 24 counts: bronze reached, gold 16 away
    assert gold is not None and "计数 24" in gold and "金奖（40次）：还差16次" in gold
    assert "铜奖（20次）" not in gold  # only the medal asked about
    perks = await bot.say("luquan", "我有什么福利", openid="o_donor")
    assert perks is not None and "献血休假" in perks and "无偿献血奉献奖铜奖" in perks
    nxt = await bot.say("luquan", "下次什么时候能献血", openid="o_donor")
    # last whole blood 2025-07-01 → 6 months later; today is 2026-03-15
    assert nxt is not None and "全血：现在就可以献" in nxt and "机采血小板" in nxt


async def test_someone_elses_records_are_refused(make_bot: Any) -> None:
    bot = await policed(make_bot)
    await seed_donor(bot)
    await bind_donor(bot)
    for text in ("查一下张三的献血记录", "我老婆的献血记录"):
        reply = await bot.say("luquan", text, openid="o_donor")
        assert reply is not None and "只能查询您本人" in reply


async def test_emergency_consent_asks_for_blood_type_and_can_be_withdrawn(make_bot: Any) -> None:
    bot = await make_bot()
    ask = await bot.say("rugao", "我愿意接收应急献血通知", openid="o_c1")
    assert ask is not None and "血型" in ask
    ok = await bot.say("rugao", "我是O型血", openid="o_c1")
    assert ok is not None and "O型血" in ok and "退订" in ok
    async with bot.app[SESSIONS]() as s:
        assert await consenting_openids(s, "rugao", ("O",)) == ["o_c1"]
        assert await consenting_openids(s, "rugao", ("A",)) == []
    off = await bot.say("rugao", "退订", openid="o_c1")
    assert off is not None and "已为您退订" in off
    async with bot.app[SESSIONS]() as s:
        assert await consenting_openids(s, "rugao") == []
        row = await s.scalar(select(EmergencyConsent))
        assert row is not None and row.withdrawn_at is not None
    again = await bot.say("rugao", "退订", openid="o_c1")
    assert again is not None and "没有订阅" in again


async def test_a_bound_donor_consents_with_the_recorded_type(make_bot: Any) -> None:
    bot = await policed(make_bot)
    await seed_donor(bot, blood_type="AB")
    await bind_donor(bot)
    ok = await bot.say("luquan", "我愿意接收应急献血通知", openid="o_donor")
    assert ok is not None and "AB型血" in ok
    async with bot.app[SESSIONS]() as s:
        assert await erase_consent(s, "luquan", "o_donor") == 1
        await s.commit()
        assert await consenting_openids(s, "luquan") == []


@pytest.mark.parametrize("text", ["我们单位下次献血是什么时候", "采血车什么时候来"])
async def test_liaison_schedule_questions_stay_with_the_liaison_handlers(
    make_bot: Any, text: str
) -> None:
    bot = await policed(make_bot)
    reply = await bot.say("luquan", text, openid="o_anon")
    assert reply is not None and "绑定单位" in reply and "献血者" not in reply


async def test_advice_is_not_read_as_an_interval() -> None:
    assert parse_donor("献血后多久能洗澡").intent == "none"


def test_a_figure_from_a_liaison_is_a_unit_question() -> None:
    message = Message(raw={}, msg_type="text", source="o_l", target="gh", create_time=0)
    message.content = "献了两次"
    for role, expected in (("anonymous", True), ("donor", True), ("liaison", False)):
        data = {"today": date(2026, 3, 15), "user": User("o_l", "luquan", role)}
        assert DonorIntent("quick")(message, data) is expected


async def test_unsubscribe_also_erases_emergency_consent(make_bot: Any) -> None:
    from sqlalchemy import select

    from bot.app import SESSIONS
    from bot.simulator import event_xml
    from models.donor_extras import EmergencyConsent

    bot = await make_bot()
    reply = await bot.say("zhangjiajie", "我愿意接收应急献血通知，我是O型血", openid="o_consent")
    assert reply is not None
    async with bot.app[SESSIONS]() as s:
        assert (await s.scalars(select(EmergencyConsent))).all()
    await bot.post("zhangjiajie", event_xml("o_consent", "unsubscribe"))
    async with bot.app[SESSIONS]() as s:
        assert (await s.scalars(select(EmergencyConsent))).all() == []
