"""Broadcasts end to end in one process: create (outbox) → worker → the fake WeChat API.

The app, its worker and the fake run in the test's event loop; the clock is injected.
Reliability under kill -9, two worker processes and Redis restarts: test_broadcast_processes.py.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import APIS, SESSIONS, broadcast_worker
from bot.broadcasts.compose import ComposeError, Composer, parse_params
from bot.broadcasts.service import (
    BroadcastError,
    cancel,
    create_broadcast,
    progress,
    retry_failed,
)
from bot.fake_wechat.state import Fault
from bot.imports.plans import import_plan_file
from bot.simulator import event_xml
from models.audiences import AudienceSpec
from models.broadcasts import Broadcast, BroadcastOptOut, Delivery
from models.people import AuditEntry
from tests.test_liaison_chat import bind

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"
ZJJ = "zhangjiajie"
# 张家界 2018 附件2: 慈利县 has March; these units have lines too (any three will do)
UNITS = ("慈利县", "市公安消防支队", "市人民医院(含市妇幼保健院)")


def noon(day: date) -> datetime:
    return datetime(day.year, day.month, day.day, 4, 0, tzinfo=UTC)  # 12:00 in Beijing


@pytest.fixture
async def world(make_bot: Any) -> Any:
    """张家界's 2018 plan, three units with a bound liaison each, the clock in March 2018."""
    bot = await make_bot(broadcast_rate=0)
    await import_plan_file(
        bot.app[SESSIONS], bot.settings, SEEDS / "zhangjiajie-2018.csv", actor="t"
    )
    bot.clock.set(noon(date(2018, 3, 5)))
    for i, unit in enumerate(UNITS):
        await bind(bot, ZJJ, unit, f"o_liaison_{i}")
    bot.fake.messages.clear()  # binding replies are not broadcasts
    return bot


def liaisons(**kw: Any) -> AudienceSpec:
    return AudienceSpec(ZJJ, "liaisons", **kw)


TEMPLATE = Composer(
    "template", "TPL-drive", {"thing1": "{{ unit }}献血提醒", "time2": "{{ month }}"}
)


async def create(bot: Any, **kw: Any) -> Any:
    async with bot.app[SESSIONS]() as s:
        args: dict[str, Any] = {
            "spec": liaisons(),
            "composer": TEMPLATE,
            "send_at": bot.clock.now(),
            "today": bot.clock.now().date(),
            "creator": "office-test",
        }
        args.update(kw)
        return await create_broadcast(s, **args)


async def drain(bot: Any, rounds: int = 20) -> Any:
    """Run the worker until nothing is due (the clock does not move)."""
    worker, _ = broadcast_worker(bot.app)
    for _ in range(rounds):
        if await worker.run_once() == 0:
            break
    return worker


async def counts(bot: Any, broadcast_id: int) -> dict[str, int]:
    async with bot.app[SESSIONS]() as s:
        return (await progress(s, broadcast_id)).counts


async def test_a_broadcast_reaches_every_liaison_once_with_their_own_unit(world: Any) -> None:
    made = await create(world, key="march-drive")
    assert made.created and made.total == 3
    await drain(world)
    assert await counts(world, made.id) == {
        "pending": 0, "sending": 0, "sent": 3, "failed": 0, "skipped": 0,
    }  # fmt: skip
    got = {m["touser"]: m for m in world.fake.messages}
    assert sorted(got) == ["o_liaison_0", "o_liaison_1", "o_liaison_2"]
    first = {m["payload"]["data"]["thing1"]["value"] for m in world.fake.messages}
    assert "慈利县献血提醒" in first and len(first) == 3  # each liaison sees their own unit
    async with world.app[SESSIONS]() as s:
        msgids = (
            await s.scalars(select(Delivery.msgid).where(Delivery.broadcast_id == made.id))
        ).all()
    assert all(msgids) and len(set(msgids)) == 3


async def test_the_same_key_twice_creates_one_broadcast(world: Any) -> None:
    one = await create(world, key="k1")
    two = await create(world, key="k1")
    assert (two.id, two.created) == (one.id, False)
    async with world.app[SESSIONS]() as s:
        assert await s.scalar(select(func.count()).select_from(Broadcast)) == 1
        assert await s.scalar(select(func.count()).select_from(Delivery)) == 3
        entry = await s.scalar(select(AuditEntry).where(AuditEntry.action == "broadcast.create"))
    assert entry is not None and entry.actor == "office-test" and entry.detail["recipients"] == 3


async def test_a_dry_run_writes_nothing(world: Any) -> None:
    made = await create(world, dry_run=True)
    assert made.id == 0 and made.total == 3 and made.sample
    async with world.app[SESSIONS]() as s:
        assert await s.scalar(select(func.count()).select_from(Delivery)) == 0


async def test_bad_templates_are_refused_before_anything_is_written(world: Any) -> None:
    with pytest.raises(ComposeError, match="unit_nmae"):
        await create(world, composer=Composer("template", "T", {"first": "{{ unit_nmae }}"}))
    with pytest.raises(ComposeError):
        await create(
            world, composer=Composer("custom", "", {"content": "{% include '/etc/passwd' %}"})
        )
    with pytest.raises(ComposeError, match="template-id"):
        Composer("template", "", {"first": "x"})
    with pytest.raises(ComposeError, match="key=value"):
        parse_params(["novalue"])
    async with world.app[SESSIONS]() as s:
        assert await s.scalar(select(func.count()).select_from(Broadcast)) == 0


async def test_unsubscribed_users_are_left_out_unless_the_notice_is_critical(world: Any) -> None:
    reply = await world.say(ZJJ, "退订", openid="o_liaison_1")
    assert reply is not None and "已退订" in reply
    normal = await create(world, key="normal")
    assert (normal.total, normal.opted_out) == (2, 1)
    critical = await create(world, key="critical", critical=True)
    assert critical.total == 3
    await drain(world)
    to_one = [m for m in world.fake.messages if m["touser"] == "o_liaison_1"]
    assert len(to_one) == 1  # only the critical one
    reply = await world.say(ZJJ, "恢复订阅", openid="o_liaison_1")
    assert reply is not None and "已恢复订阅" in reply
    assert (await create(world, key="after")).total == 3


async def test_an_empty_audience_is_refused(world: Any) -> None:
    with pytest.raises(BroadcastError, match="没有可发送的人"):
        await create(world, spec=AudienceSpec(ZJJ, "office"))  # nobody bound as office


async def test_transient_errors_retry_and_permanent_ones_are_recorded(world: Any) -> None:
    path = "/cgi-bin/message/template/send"
    world.fake.add_fault(path, Fault(errcode=45011, times=1))
    world.fake.add_fault(path, Fault(errcode=-1, times=1))
    world.fake.set_user_state(
        world.settings.jurisdictions[ZJJ].wechat.appid, "o_liaison_2", "unsubscribed"
    )
    made = await create(world)
    await drain(world)
    c = await counts(world, made.id)
    assert c["pending"] == 2 and c["sent"] + c["failed"] == 1  # two met a transient error
    world.clock.set(world.clock.now() + timedelta(minutes=30))  # past any backoff
    await drain(world)
    c = await counts(world, made.id)
    assert (c["sent"], c["failed"], c["pending"]) == (2, 1, 0)
    async with world.app[SESSIONS]() as s:
        failed = await s.scalar(select(Delivery).where(Delivery.status == "failed"))
        p = await progress(s, made.id)
    assert failed is not None and failed.openid == "o_liaison_2" and "关注" in (failed.error or "")
    assert p.errors and p.errors[0][1] == 1


async def test_a_rejected_token_is_refreshed_once(world: Any) -> None:
    api = world.app[APIS][("mp", ZJJ)]
    await api.access_token()
    before = world.fake.token_requests
    world.fake.add_fault("/cgi-bin/message/template/send", Fault(errcode=40001, times=1))
    made = await create(world)
    await drain(world)
    assert (await counts(world, made.id))["sent"] == 3
    assert world.fake.token_requests == before + 1


async def test_quiet_hours_hold_non_critical_sends_until_morning(world: Any) -> None:
    world.clock.set(datetime(2018, 3, 5, 14, 30, tzinfo=UTC))  # 22:30 in Beijing
    normal = await create(world, key="night")
    urgent = await create(world, key="urgent", critical=True)
    await drain(world)
    assert (await counts(world, normal.id))["pending"] == 3
    assert (await counts(world, urgent.id))["sent"] == 3
    world.clock.set(datetime(2018, 3, 6, 0, 5, tzinfo=UTC))  # 08:05
    await drain(world)
    assert (await counts(world, normal.id))["sent"] == 3


async def test_cancel_skips_what_is_not_sent_and_retry_requeues_failures(world: Any) -> None:
    later = await create(world, key="later", send_at=world.clock.now() + timedelta(days=1))
    async with world.app[SESSIONS]() as s:
        assert await cancel(s, later.id, "office-test") == 3
    async with world.app[SESSIONS]() as s:
        with pytest.raises(BroadcastError, match="已经取消"):
            await cancel(s, later.id, "office-test")
    assert (await counts(world, later.id))["skipped"] == 3

    world.fake.add_fault("/cgi-bin/message/template/send", Fault(errcode=47003, times=3))
    made = await create(world, key="bad-field")
    await drain(world)
    assert (await counts(world, made.id))["failed"] == 3
    async with world.app[SESSIONS]() as s:
        assert await retry_failed(s, made.id, "office-test", world.clock.now()) == 3
    await drain(world)
    assert (await counts(world, made.id))["sent"] == 3


async def test_a_template_delivery_report_lands_on_its_delivery(world: Any) -> None:
    made = await create(world)
    await drain(world)
    async with world.app[SESSIONS]() as s:
        row = await s.scalar(select(Delivery).where(Delivery.openid == "o_liaison_0"))
    assert row is not None and row.msgid
    xml = event_xml(
        "o_liaison_0", "TEMPLATESENDJOBFINISH", create_time=int(world.clock.timestamp()),
        MsgID=row.msgid, Status="failed:user block",
    )  # fmt: skip
    status, _, _ = await world.post(ZJJ, xml)
    assert status == 200
    async with world.app[SESSIONS]() as s:
        row = await s.get(Delivery, row.id)
    assert row is not None and row.status == "failed" and row.report == "failed:user block"
    assert (await counts(world, made.id))["sent"] == 2


async def test_unfollowing_skips_pending_deliveries_and_forgets_the_opt_out(world: Any) -> None:
    await world.say(ZJJ, "退订", openid="o_liaison_0")
    made = await create(world, send_at=world.clock.now() + timedelta(hours=1))
    xml = event_xml("o_liaison_1", "unsubscribe", create_time=int(world.clock.timestamp()))
    assert (await world.post(ZJJ, xml))[0] == 200
    xml = event_xml("o_liaison_0", "unsubscribe", create_time=int(world.clock.timestamp()) + 1)
    assert (await world.post(ZJJ, xml))[0] == 200
    c = await counts(world, made.id)
    assert c["skipped"] == 1 and c["pending"] == 1
    async with world.app[SESSIONS]() as s:
        assert await s.scalar(select(func.count()).select_from(BroadcastOptOut)) == 0


async def test_custom_messages_render_per_recipient(world: Any) -> None:
    for i in range(3):  # customer-service messages need a recent interaction
        world.fake.interact(world.settings.jurisdictions[ZJJ].wechat.appid, f"o_liaison_{i}")
    composer = Composer("custom", "", {"content": "{{ unit }}：{{ month }}计划{{ target }}"})
    made = await create(world, composer=composer, spec=liaisons(month=3))
    await drain(world)
    texts = {m["content"] for m in world.fake.messages}
    assert any(t.startswith("慈利县：3月计划") for t in texts), texts
    assert (await counts(world, made.id))["sent"] == made.total
