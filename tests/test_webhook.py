"""Signed WeChat XML over HTTP, in all three modes, through the real app."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import CHANNELS, SESSIONS
from bot.simulator import event_xml, message_xml, text_xml
from bot.wechat.signature import sign
from models.messaging import TemplateSendEvent
from models.users import Binding, SubscriberDaily

MODES = ["rugao", "qingpu", "zhangjiajie"]  # plain, compatible, safe


@pytest.mark.parametrize("code", MODES)
async def test_text_gets_help_listing_what_the_bot_can_do(make_bot: Any, code: str) -> None:
    bot = await make_bot()
    reply = await bot.say(code, "你好")
    assert reply is not None
    assert "可以这样问我" in reply and "帮助" in reply


@pytest.mark.parametrize("code", MODES)
async def test_reply_is_encrypted_exactly_when_the_mode_needs_it(make_bot: Any, code: str) -> None:
    bot = await make_bot()
    status, _, raw = await bot.post(code, text_xml("o1", "帮助", create_time=0))
    assert status == 200
    assert (b"<Encrypt>" in raw) == (code != "rugao")
    if code != "rugao":
        assert "帮助".encode() not in raw  # nothing readable leaks from an encrypted reply


async def test_compatible_mode_also_accepts_plaintext_posts(make_bot: Any) -> None:
    bot = await make_bot()
    status, reply, raw = await bot.post(
        "qingpu", text_xml("o1", "帮助"), sim=bot.sim("qingpu", encrypt=False)
    )
    assert status == 200 and b"<Encrypt>" not in raw
    assert reply is not None and "可以这样问我" in reply["Content"]


async def test_safe_mode_refuses_an_unencrypted_post(make_bot: Any) -> None:
    bot = await make_bot()
    status, _, _ = await bot.post(
        "zhangjiajie", text_xml("o1", "帮助"), sim=bot.sim("zhangjiajie", encrypt=False)
    )
    assert status == 400


@pytest.mark.parametrize("code", MODES)
async def test_recognised_voice_is_answered_as_its_text(make_bot: Any, code: str) -> None:
    bot = await make_bot()
    xml = message_xml("o1", "voice", MediaId="m1", Format="amr", Recognition="帮助")
    _, reply, _ = await bot.post(code, xml)
    assert reply is not None and "可以这样问我" in reply["Content"]


@pytest.mark.parametrize("kind", ["image", "video", "link", "voice"])
async def test_message_kinds_we_cannot_read_get_a_polite_reply(make_bot: Any, kind: str) -> None:
    bot = await make_bot()
    _, reply, _ = await bot.post("zhangjiajie", message_xml("o1", kind, MediaId="m1"))
    assert reply is not None and "请发文字" in reply["Content"]


async def test_unknown_message_type_gets_help_not_an_error(make_bot: Any) -> None:
    bot = await make_bot()
    status, reply, _ = await bot.post("rugao", message_xml("o1", "hologram", Payload="x"))
    assert status == 200 and reply is not None and "请发文字" in reply["Content"]


@pytest.mark.parametrize("code", MODES)
async def test_subscribe_is_welcomed_and_counted(make_bot: Any, code: str) -> None:
    bot = await make_bot()
    _, reply, _ = await bot.post(code, event_xml("o_new", "subscribe"))
    assert reply is not None and "感谢关注" in reply["Content"]
    async with bot.app[SESSIONS]() as s:
        assert await s.scalar(select(func.sum(SubscriberDaily.subscribes))) == 1


@pytest.mark.parametrize("code", MODES)
async def test_unsubscribe_erases_bindings_and_state(make_bot: Any, code: str) -> None:
    bot = await make_bot()
    async with bot.app[SESSIONS]() as s:
        s.add(Binding(jurisdiction=code, openid="o_gone", role="liaison"))
        s.add(Binding(jurisdiction=code, openid="o_stays", role="liaison"))
        await s.commit()
    status, reply, raw = await bot.post(code, event_xml("o_gone", "unsubscribe"))
    assert status == 200 and reply is None and raw == b"success"
    async with bot.app[SESSIONS]() as s:
        left = (await s.scalars(select(Binding.openid))).all()
        counts = await s.scalar(select(func.sum(SubscriberDaily.unsubscribes)))
    assert left == ["o_stays"]
    assert counts == 1


async def test_template_send_report_is_recorded_once(make_bot: Any) -> None:
    bot = await make_bot()
    xml = event_xml("o1", "TEMPLATESENDJOBFINISH", MsgID="200163836", Status="success")
    for _ in range(2):  # WeChat may report twice with a different CreateTime
        status, _, raw = await bot.post("zhangjiajie", xml)
        assert status == 200 and raw == b"success"
        bot.clock.advance(1)
        xml = event_xml("o1", "TEMPLATESENDJOBFINISH", MsgID="200163836", Status="success")
    async with bot.app[SESSIONS]() as s:
        rows = (await s.scalars(select(TemplateSendEvent))).all()
    assert [(r.msg_id, r.status) for r in rows] == [("200163836", "success")]
    assert "o1" not in rows[0].openid_hash  # no openid kept in clear


async def test_unknown_event_is_acknowledged_with_success(make_bot: Any) -> None:
    bot = await make_bot()
    status, _, raw = await bot.post("rugao", event_xml("o1", "some_future_event"))
    assert status == 200 and raw == b"success"


async def test_reply_text_with_cdata_terminator_arrives_intact(make_bot: Any) -> None:
    from bot.dispatcher import Router, build_dispatcher

    router = Router(name="echo")

    @router.message()
    async def echo(message: Any) -> str:
        return "回声：" + message.content

    dispatcher = build_dispatcher()
    dispatcher.include(router, first=True)
    bot = await make_bot(dispatcher=dispatcher)
    for code in MODES:
        text = "a]]>b<xml>&amp;]]]]>c"
        assert await bot.say(code, text) == "回声：" + text


async def test_long_reply_is_split_and_continued_with_more(make_bot: Any) -> None:
    from bot.dispatcher import Router, build_dispatcher
    from bot.filters import Text

    router = Router(name="long")
    lines = [f"第{i}行：某某单位本月献血进度 {i}/100" for i in range(300)]

    @router.message(Text("长"))
    async def long_reply() -> str:
        return "\n".join(lines)

    dispatcher = build_dispatcher()
    dispatcher.include(router, first=True)
    bot = await make_bot(dispatcher=dispatcher)
    pages = [await bot.say("zhangjiajie", "长")]
    while pages[-1] and "更多" in pages[-1]:
        pages.append(await bot.say("zhangjiajie", "更多"))
        assert len(pages) < 50
    assert all(len(p.encode()) <= 2048 for p in pages if p)
    seen = [ln for p in pages if p for ln in p.splitlines() if ln.startswith("第")]
    assert seen == lines
    assert "没有更多" in (await bot.say("zhangjiajie", "更多") or "")


async def test_location_reaches_a_handler_with_coordinates(make_bot: Any) -> None:
    from bot.dispatcher import Router, build_dispatcher

    router = Router(name="where")

    @router.message(types=("location",))
    async def where(message: Any) -> str:
        return f"{message.location[0]:.4f},{message.location[1]:.4f} {message.label}"

    @router.event("location")
    async def where_event(message: Any) -> str:
        return f"event {message.location[0]:.2f}"

    dispatcher = build_dispatcher()
    dispatcher.include(router, first=True)
    bot = await make_bot(dispatcher=dispatcher)
    xml = message_xml(
        "o1", "location", Location_X="29.1171", Location_Y="110.4792", Scale="15", Label="张家界"
    )
    _, reply, _ = await bot.post("zhangjiajie", xml)
    assert reply is not None and reply["Content"] == "29.1171,110.4792 张家界"
    ev = event_xml("o1", "LOCATION", Latitude="29.12", Longitude="110.48", Precision="65")
    _, reply, _ = await bot.post("zhangjiajie", ev)
    assert reply is not None and reply["Content"] == "event 29.12"


async def test_previous_aes_key_still_decrypts_during_rotation(make_bot: Any) -> None:
    from bot.channels import Channel
    from bot.simulator import Simulator
    from bot.wechat.crypto import MessageCrypto
    from tests.conftest import OLD_AES_KEY

    bot = await make_bot()
    current = bot.app[CHANNELS][("mp", "zhangjiajie")]
    old = MessageCrypto(current.token, OLD_AES_KEY, current.app_id)
    sim = Simulator(Channel(**{**_fields(current), "crypto": old}), now=bot.clock.timestamp)
    query, body = sim.request(text_xml("o1", "帮助"))
    resp = await bot.client.post(sim.path, params=query, data=body)
    assert resp.status == 200
    # the reply is encrypted with the *current* key
    reply = bot.sim("zhangjiajie").open_reply(await resp.read())
    assert reply is not None and "可以这样问我" in reply["Content"]


def _fields(channel: Any) -> dict[str, Any]:
    return {f: getattr(channel, f) for f in channel.__dataclass_fields__}


async def test_get_verification_returns_echostr_verbatim(make_bot: Any) -> None:
    bot = await make_bot()
    ts, nonce = str(int(bot.clock.timestamp())), "n123"
    echostr = "8734972349872<&>'\""
    params = {"signature": sign("token3", ts, nonce), "timestamp": ts, "nonce": nonce}
    resp = await bot.client.get("/wechat/zhangjiajie", params={**params, "echostr": echostr})
    assert resp.status == 200 and await resp.text() == echostr
    forged = {**params, "signature": "0" * 40, "echostr": echostr}
    resp = await bot.client.get("/wechat/zhangjiajie", params=forged)
    assert resp.status == 403 and echostr not in await resp.text()


async def test_wecom_echostr_is_decrypted(make_bot: Any) -> None:
    bot = await make_bot()
    channel = bot.sim("zhangjiajie", "wecom").channel
    ts, nonce = str(int(bot.clock.timestamp())), "n1"
    echostr = channel.crypto.encrypt(b"1616140317555161061")
    params = {
        "msg_signature": sign(channel.token, ts, nonce, echostr),
        "timestamp": ts,
        "nonce": nonce,
        "echostr": echostr,
    }
    resp = await bot.client.get("/wecom/zhangjiajie", params=params)
    assert resp.status == 200 and await resp.text() == "1616140317555161061"


async def test_wecom_message_shares_the_dispatcher(make_bot: Any) -> None:
    bot = await make_bot()
    reply = await bot.say("zhangjiajie", "帮助", kind="wecom")
    assert reply is not None and "可以这样问我" in reply


async def test_health_ready_and_metrics(make_bot: Any) -> None:
    bot = await make_bot()
    assert (await bot.client.get("/healthz")).status == 200
    ready = await bot.client.get("/readyz")
    assert ready.status == 200 and (await ready.json())["database"] == "ok"
    await bot.say("rugao", "你好")
    await bot.post("rugao", b"not xml")
    text = await (await bot.client.get("/metrics")).text()
    assert 'donorbot_webhook_requests_total{outcome="ok",route="mp"} 1.0' in text
    assert 'donorbot_webhook_requests_total{outcome="BadMessage",route="mp"} 1.0' in text
    assert "donorbot_webhook_seconds_bucket" in text


async def test_readyz_reports_an_unreachable_redis(make_bot: Any) -> None:
    from bot.storage import RedisStorage

    bot = await make_bot(storage=RedisStorage.from_url("redis://127.0.0.1:1/0"))
    resp = await bot.client.get("/readyz")
    assert resp.status == 503 and (await resp.json())["storage"].startswith("unreachable")


async def test_no_error_is_logged_for_a_normal_conversation(
    make_bot: Any, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await make_bot()
    with caplog.at_level(logging.INFO):
        await bot.say("zhangjiajie", "你好", openid="o_private_openid")
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert "o_private_openid" not in caplog.text
