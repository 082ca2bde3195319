"""WeChat's retries, the 5-second window, and late replies that survive a crash."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from bot.app import SESSIONS
from bot.dispatcher import Router, build_dispatcher
from bot.filters import Text
from bot.simulator import text_xml
from models.messaging import OutboundMessage


def _counting_dispatcher(delay: float = 0.0) -> tuple[Any, list[str]]:
    """The real dispatcher with a first router that counts runs (and may be slow)."""
    runs: list[str] = []
    router = Router(name="counting")

    @router.message(Text("慢", "数"))
    async def counted(message: Any) -> str:
        runs.append(message.msg_id)
        await asyncio.sleep(delay)
        return f"第{len(runs)}次处理"

    dispatcher = build_dispatcher()
    dispatcher.include(router, first=True)
    return dispatcher, runs


async def test_four_concurrent_retries_run_the_handler_once(make_bot: Any, storage: Any) -> None:
    dispatcher, runs = _counting_dispatcher(delay=0.3)
    bot = await make_bot(storage=storage, dispatcher=dispatcher)
    sim = bot.sim("zhangjiajie")
    xml = text_xml("o1", "数", msg_id=424242, create_time=int(bot.clock.timestamp()))
    # WeChat retries with fresh timestamp/nonce each time; the body (MsgId) is the same
    requests = [sim.request(xml) for _ in range(4)]
    responses = await asyncio.gather(
        *(bot.client.post(sim.path, params=q, data=b) for q, b in requests)
    )
    bodies = [await r.read() for r in responses]
    assert [r.status for r in responses] == [200] * 4
    assert runs == ["424242"]
    replies = [sim.open_reply(b) for b in bodies]
    texts = [r["Content"] for r in replies if r is not None]
    assert texts and set(texts) == {"第1次处理"}  # the others said `success`
    # a retry after the reply is ready gets that same reply again
    q, b = sim.request(xml)
    again = sim.open_reply(await (await bot.client.post(sim.path, params=q, data=b)).read())
    assert again is not None and again["Content"] == "第1次处理"
    assert runs == ["424242"]


async def test_two_apps_sharing_redis_run_a_message_once(
    make_bot: Any, redis_storage: Any, sqlite_url: str
) -> None:
    """Two `serve` processes behind a load balancer: the dedup key lives in Redis."""
    from bot.storage import RedisStorage

    d1, runs1 = _counting_dispatcher(delay=0.2)
    d2, runs2 = _counting_dispatcher(delay=0.2)
    bot1 = await make_bot(storage=redis_storage, dispatcher=d1)
    other = RedisStorage(redis_storage.redis, redis_storage.prefix)
    bot2 = await make_bot(storage=other, dispatcher=d2, database_url=sqlite_url)
    xml = text_xml("o1", "数", msg_id=77, create_time=int(bot1.clock.timestamp()))
    r1, r2 = await asyncio.gather(bot1.post("rugao", xml), bot2.post("rugao", xml))
    assert r1[0] == r2[0] == 200
    assert len(runs1) + len(runs2) == 1


async def test_slow_handler_answers_success_then_customer_service_message(
    make_bot: Any,
) -> None:
    dispatcher, runs = _counting_dispatcher(delay=0.6)
    bot = await make_bot(dispatcher=dispatcher, reply_budget_seconds=0.2)
    bot.fake.interact(bot.settings.jurisdictions["zhangjiajie"].wechat.appid, "o_slow")
    status, reply, raw = await bot.post("zhangjiajie", text_xml("o_slow", "慢"))
    assert status == 200 and reply is None and raw == b"success"
    late = await bot.wait_for_late("o_slow")
    assert [m["content"] for m in late] == ["第1次处理"]
    async with bot.app[SESSIONS]() as s:
        row = (await s.scalars(select(OutboundMessage))).one()
    assert row.status == "sent" and row.request_xml is None  # the message text is not kept
    # WeChat retries the unanswered message: no second run, no second send
    xml_again = text_xml("o_slow", "慢", msg_id=int(row.source_key.rsplit(":", 1)[1]))
    status, reply, _ = await bot.post("zhangjiajie", xml_again)
    assert status == 200
    await asyncio.sleep(0.3)
    assert len(runs) == 1 and len(bot.fake.messages) == 1


async def test_late_reply_survives_a_crash_before_the_handler_finished(make_bot: Any) -> None:
    """A row left `processing` by a dead server is re-run and answered by a worker."""
    bot = await make_bot()
    appid = bot.settings.jurisdictions["rugao"].wechat.appid
    bot.fake.interact(appid, "o_crash")
    now = bot.clock.now()
    async with bot.app[SESSIONS]() as s:
        s.add(
            OutboundMessage(
                jurisdiction="rugao",
                channel="mp",
                openid="o_crash",
                content="",
                request_xml=text_xml("o_crash", "帮助", msg_id=99).decode(),
                source_key="dedup:mp:rugao:m:99",
                status="processing",
                attempts=0,
                next_attempt_at=now,
                locked_until=now - timedelta(seconds=1),  # the lease of the dead server ran out
            )
        )
        await s.commit()
    late = await bot.wait_for_late("o_crash")
    assert len(late) == 1 and "可以这样问我" in late[0]["content"]


async def test_transient_send_error_is_retried_with_backoff(make_bot: Any) -> None:
    dispatcher, _ = _counting_dispatcher(delay=0.4)
    bot = await make_bot(dispatcher=dispatcher, reply_budget_seconds=0.1)
    appid = bot.settings.jurisdictions["rugao"].wechat.appid
    bot.fake.interact(appid, "o_retry")
    from bot.fake_wechat import Fault

    bot.fake.add_fault("/cgi-bin/message/custom/send", Fault(errcode=45011, times=1))
    await bot.post("rugao", text_xml("o_retry", "慢"))
    for _ in range(100):
        async with bot.app[SESSIONS]() as s:
            row = await s.scalar(select(OutboundMessage))
        if row is not None and row.attempts == 1 and row.status == "pending":
            break
        await asyncio.sleep(0.05)
    assert row is not None and row.status == "pending" and "45011" in (row.last_error or "")
    bot.clock.advance(5)  # past the backoff
    late = await bot.wait_for_late("o_retry")
    assert [m["content"] for m in late] == ["第1次处理"]


async def test_permanent_send_error_is_recorded_not_retried(make_bot: Any) -> None:
    dispatcher, _ = _counting_dispatcher(delay=0.4)
    bot = await make_bot(dispatcher=dispatcher, reply_budget_seconds=0.1)
    # no interaction registered: WeChat refuses with 45015 (outside the 48-hour window)
    await bot.post("rugao", text_xml("o_gone", "慢"))
    for _ in range(100):
        async with bot.app[SESSIONS]() as s:
            row = await s.scalar(select(OutboundMessage))
        if row is not None and row.status == "failed":
            break
        await asyncio.sleep(0.05)
    assert row is not None and row.status == "failed" and "45015" in (row.last_error or "")
    assert bot.fake.messages == []
