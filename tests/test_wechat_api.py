"""The real WeChat client against the fake WeChat, over real HTTP, with real storage backends."""

from __future__ import annotations

import asyncio
import logging
import traceback
from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.clock import FixedClock
from bot.errors import (
    TRANSIENT_ERRCODES,
    WeChatAPIError,
    WeChatTransportError,
    classify_error,
    is_quota,
    is_transient,
    permanent_reason,
)
from bot.fake_wechat import FakeWeChat, Fault, create_fake_app
from bot.storage import MemoryStorage, RedisStorage, Storage
from bot.wechat_api import WeChatAPI

APPID, SECRET = "wx2c2769f8efd9abc2", "mp-secret-0123456789abcdef"
CORPID, CORPSECRET = "ww0a1b2c3d4e5f6789", "corp-secret-abcdef0123456789"
DONOR = "oDonor_openid_0001"
SEND = "/cgi-bin/message/custom/send"
NOTICE = "请于3月20日前到中心血站献血，感谢您的爱心！"

MakeAPI = Callable[..., WeChatAPI]


@pytest.fixture
def fake(clock: FixedClock) -> FakeWeChat:
    return FakeWeChat({APPID: SECRET}, clock=clock, wecom={CORPID: CORPSECRET})


@pytest.fixture
async def base_url(fake: FakeWeChat, aiohttp_server: Any) -> str:
    server = await aiohttp_server(create_fake_app(fake))
    return str(server.make_url("")).rstrip("/")


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_api(http: aiohttp.ClientSession, base_url: str) -> MakeAPI:
    def make(storage: Storage | None = None, **overrides: Any) -> WeChatAPI:
        options: dict[str, Any] = {"base_url": base_url, "appid": APPID, "secret": SECRET}
        options.update(overrides)
        return WeChatAPI(http, storage if storage is not None else MemoryStorage(), **options)

    return make


@pytest.fixture
def donor_wrote(fake: FakeWeChat) -> None:
    """The donor has just written to the account, so customer-service messages may go out."""
    fake.interact(APPID, DONOR)


@pytest.mark.usefixtures("donor_wrote")
async def test_one_token_serves_many_sends(fake: FakeWeChat, make_api: MakeAPI) -> None:
    api = make_api()
    for n in range(5):
        await api.send_text(DONOR, f"第{n + 1}条")
    assert fake.token_requests == 1
    assert [m["content"] for m in fake.messages] == ["第1条", "第2条", "第3条", "第4条", "第5条"]


@pytest.mark.usefixtures("donor_wrote")
async def test_token_is_shared_between_processes_through_storage(
    fake: FakeWeChat, make_api: MakeAPI, storage: Storage
) -> None:
    serve, worker = make_api(storage), make_api(storage)
    await serve.send_text(DONOR, "from serve")
    await worker.send_text(DONOR, "from worker")
    assert fake.token_requests == 1
    cached = await storage.get_json(f"wechat:token:mp:{APPID}")
    assert cached["access_token"] == await worker.access_token()


@pytest.mark.usefixtures("donor_wrote")
async def test_concurrent_sends_with_an_empty_cache_fetch_one_token(
    fake: FakeWeChat, make_api: MakeAPI, storage: Storage
) -> None:
    fake.enforce_window = False  # 20 messages exceed one user's window; this is about tokens
    # A slow token answer makes sure both processes miss the cache before it is filled.
    fake.add_fault("/cgi-bin/stable_token", Fault(latency=0.2))
    serve, worker = make_api(storage), make_api(storage)
    sends = [api.send_text(f"user{n}", "hi") for n in range(10) for api in (serve, worker)]
    await asyncio.gather(*sends)
    assert fake.token_requests == 1
    assert len(fake.messages) == 20


@pytest.mark.usefixtures("donor_wrote")
async def test_hot_path_does_not_read_shared_storage(fake: FakeWeChat, make_api: MakeAPI) -> None:
    class CountingStorage(MemoryStorage):
        reads = 0

        async def get(self, key: str) -> str | None:
            self.reads += 1
            return await super().get(key)

    storage = CountingStorage()
    api = make_api(storage)
    await api.send_text(DONOR, "first")
    reads_for_first = storage.reads
    for _ in range(4):
        await api.send_text(DONOR, "again")
    assert storage.reads == reads_for_first
    assert len(fake.messages) == 5


@pytest.mark.usefixtures("donor_wrote")
async def test_invalid_token_is_refreshed_once_and_the_send_succeeds(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    api = make_api()
    first = await api.access_token()
    fake.add_fault(SEND, Fault(errcode=40001))
    await api.send_text(DONOR, NOTICE)
    assert fake.token_requests == 2
    assert await api.access_token() != first
    assert [m["content"] for m in fake.messages] == [NOTICE]


async def test_a_burst_of_rejections_costs_one_refresh(fake: FakeWeChat, make_api: MakeAPI) -> None:
    fake.enforce_window = False
    api = make_api()
    await api.access_token()
    fake.add_fault(SEND, Fault(errcode=40001, times=10))
    await asyncio.gather(*(api.send_text(f"user{n}", "hi") for n in range(10)))
    assert fake.token_requests == 2  # one force refresh of the 20 WeChat allows a day
    assert len(fake.messages) == 10


@pytest.mark.usefixtures("donor_wrote")
async def test_a_token_rejected_twice_surfaces_after_one_refresh(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    fake.add_fault(SEND, Fault(errcode=40001, times=2))
    with pytest.raises(WeChatAPIError) as caught:
        await make_api().send_text(DONOR, NOTICE)
    assert caught.value.errcode == 40001
    assert fake.token_requests == 2  # the first fetch and one refresh, no loop
    assert fake.messages == []


@pytest.mark.usefixtures("donor_wrote")
async def test_expired_token_is_replaced_when_wechat_says_42001(
    fake: FakeWeChat, make_api: MakeAPI, clock: FixedClock
) -> None:
    api = make_api()
    await api.send_text(DONOR, "before")
    clock.advance(7201)  # WeChat's clock passes the expiry; this process still trusts its copy
    fake.interact(APPID, DONOR)
    await api.send_text(DONOR, "after")
    assert fake.token_requests == 2
    assert [m["content"] for m in fake.messages] == ["before", "after"]


@pytest.mark.usefixtures("donor_wrote")
async def test_a_token_refreshed_by_another_process_is_adopted_not_refreshed_again(
    fake: FakeWeChat, make_api: MakeAPI, storage: Storage
) -> None:
    serve, worker = make_api(storage), make_api(storage)
    await serve.send_text(DONOR, "one")
    await worker.access_token(force_refresh=True)  # revokes the token `serve` holds
    await serve.send_text(DONOR, "two")
    assert fake.token_requests == 2  # serve read the worker's token instead of forcing a third
    assert len(fake.messages) == 2


@pytest.mark.usefixtures("donor_wrote")
async def test_rate_limit_surfaces_as_a_transient_api_error(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    api = make_api()
    fake.add_fault(SEND, Fault(errcode=45011))
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_text(DONOR, NOTICE)
    assert caught.value.errcode == 45011
    assert caught.value.errcode in TRANSIENT_ERRCODES
    assert fake.messages == []
    await api.send_text(DONOR, NOTICE)  # the retry a worker makes goes through
    assert len(fake.messages) == 1


@pytest.mark.parametrize(
    "fault",
    [Fault(status=500), Fault(status=502), Fault(latency=1.0), Fault(drop=True)],
    ids=["http-500", "http-502", "slow", "dropped"],
)
@pytest.mark.usefixtures("donor_wrote")
async def test_transport_failures_raise_transport_error_without_leaking_secrets(
    fake: FakeWeChat, make_api: MakeAPI, fault: Fault
) -> None:
    api = make_api(timeout=0.3)
    token = await api.access_token()
    fake.add_fault(SEND, fault)
    with pytest.raises(WeChatTransportError) as caught:
        await api.send_text(DONOR, NOTICE)
    logged = "".join(traceback.format_exception(caught.value))  # what a log would show
    assert token not in logged and SECRET not in logged
    assert fake.messages == []


async def test_a_body_that_is_not_json_is_a_transport_error(
    aiohttp_server: Any, http: aiohttp.ClientSession
) -> None:
    async def captive_portal(request: web.Request) -> web.Response:
        return web.Response(text="<html>请先登录</html>", content_type="text/html")

    app = web.Application()
    app.router.add_post("/cgi-bin/stable_token", captive_portal)
    server = await aiohttp_server(app)
    api = WeChatAPI(
        http, MemoryStorage(), base_url=str(server.make_url("")), appid=APPID, secret=SECRET
    )
    with pytest.raises(WeChatTransportError, match="not JSON"):
        await api.access_token()


async def test_no_message_outside_the_48_hour_window(
    fake: FakeWeChat, make_api: MakeAPI, clock: FixedClock
) -> None:
    api = make_api()
    with pytest.raises(WeChatAPIError) as never_wrote:
        await api.send_text(DONOR, NOTICE)
    assert never_wrote.value.errcode == 45015

    fake.interact(APPID, DONOR)
    for n in range(5):
        await api.send_text(DONOR, f"提醒{n}")
    with pytest.raises(WeChatAPIError) as sixth:
        await api.send_text(DONOR, "提醒5")
    assert sixth.value.errcode == 45047

    fake.interact(APPID, DONOR)  # the donor writes again: a new allowance
    await api.send_text(DONOR, "new window")
    clock.advance(49 * 3600)
    with pytest.raises(WeChatAPIError) as late:
        await api.send_text(DONOR, "too late")
    assert late.value.errcode == 45015
    assert len(fake.messages) == 6


async def test_wecom_send(fake: FakeWeChat, make_api: MakeAPI) -> None:
    api = make_api(appid=CORPID, secret=CORPSECRET, kind="wecom", agent_id=1000002)
    answer = await api.send_text("ZhangSan", NOTICE)  # WeCom has no 48-hour window
    assert answer["msgid"]
    [message] = fake.messages
    assert (message["appid"], message["touser"], message["content"]) == (CORPID, "ZhangSan", NOTICE)
    assert message["payload"]["agentid"] == 1000002


@pytest.mark.usefixtures("donor_wrote")
async def test_chinese_text_arrives_as_written(fake: FakeWeChat, make_api: MakeAPI) -> None:
    await make_api().send_text(DONOR, NOTICE)
    assert fake.messages[0]["content"] == NOTICE  # not "\\u8bf7\\u4e8e..."


async def test_wrong_secret_is_an_api_error_and_caches_nothing(
    fake: FakeWeChat, make_api: MakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    storage = MemoryStorage()
    caplog.set_level(logging.DEBUG)
    with pytest.raises(WeChatAPIError) as caught:
        await make_api(storage, secret="not-the-secret").access_token()
    assert caught.value.errcode == 40125
    assert await storage.get(f"wechat:token:mp:{APPID}") is None
    assert "not-the-secret" not in caplog.text


@pytest.mark.usefixtures("donor_wrote")
async def test_logs_never_show_the_secret_or_the_token(
    fake: FakeWeChat, make_api: MakeAPI, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="bot")
    api = make_api()
    fake.add_fault(SEND, Fault(errcode=40001))
    await api.send_text(DONOR, NOTICE)
    assert "refreshing" in caplog.text
    assert SECRET not in caplog.text
    assert await api.access_token() not in caplog.text


async def test_token_is_cached_for_five_minutes_less_than_wechat_grants(
    make_api: MakeAPI, redis_storage: RedisStorage
) -> None:
    await make_api(redis_storage).access_token()
    ttl_ms = await redis_storage.redis.pttl(redis_storage.prefix + f"wechat:token:mp:{APPID}")
    assert 6890_000 < ttl_ms <= 6900_000


# -- template messages and subscription notices -------------------------------------------

TEMPLATE = "/cgi-bin/message/template/send"
BIZSEND = "/cgi-bin/message/subscribe/bizsend"
TID = "tpl-drive-reminder-0001"
FIELDS = {"keyword1": "慈利县", "keyword2": "3月20日"}


async def test_send_template_sends_what_wechat_documents(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    answer = await make_api().send_template(
        DONOR, TID, FIELDS, url="https://example.org/drive", client_msg_id="delivery-1"
    )
    [message] = fake.messages
    assert answer["msgid"] == message["msgid"]
    assert message["payload"] == {
        "touser": DONOR,
        "template_id": TID,
        "url": "https://example.org/drive",
        "data": {"keyword1": {"value": "慈利县"}, "keyword2": {"value": "3月20日"}},
        "client_msg_id": "delivery-1",
    }
    await make_api().send_template(DONOR, TID, FIELDS)  # url and client_msg_id are optional
    assert set(fake.messages[1]["payload"]) == {"touser", "template_id", "data"}


async def test_send_subscribe_needs_the_users_acceptance(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    api = make_api()
    data = {"thing1": "慈利县三月献血", "time2": "2018-03-20"}
    with pytest.raises(WeChatAPIError) as refused:
        await api.send_subscribe(DONOR, TID, data)
    kind, reason = classify_error(refused.value)
    assert kind == "permanent" and reason.startswith("用户拒绝接收订阅消息")
    fake.set_user_state(APPID, DONOR, f"subscribed_template:{TID}")
    answer = await api.send_subscribe(DONOR, TID, data, page="pages/drive/index")
    [message] = fake.messages
    assert answer["msgid"] == message["msgid"] and message["msgtype"] == "subscribe"
    assert message["payload"]["page"] == "pages/drive/index"
    assert message["payload"]["data"]["thing1"] == {"value": "慈利县三月献血"}


async def test_wecom_has_no_template_messages(make_api: MakeAPI) -> None:
    api = make_api(appid=CORPID, secret=CORPSECRET, kind="wecom", agent_id=1000002)
    with pytest.raises(ValueError, match="mp"):
        await api.send_template("ZhangSan", TID, FIELDS)
    with pytest.raises(ValueError, match="mp"):
        await api.send_subscribe("ZhangSan", TID, FIELDS)


async def test_template_40001_once_refreshes_the_token_once_and_sends(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    api = make_api()
    first = await api.access_token()
    fake.add_fault(TEMPLATE, Fault(errcode=40001))
    await api.send_template(DONOR, TID, FIELDS, client_msg_id="d-1")
    assert (fake.token_requests, fake.force_refreshes) == (2, 1)
    assert await api.access_token() != first
    assert len(fake.messages) == 1
    await api.send_template(DONOR, TID, FIELDS, client_msg_id="d-2")
    assert fake.token_requests == 2


async def test_template_45011_is_a_transient_api_error(fake: FakeWeChat, make_api: MakeAPI) -> None:
    api = make_api()
    fake.add_fault(TEMPLATE, Fault(errcode=45011))
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_template(DONOR, TID, FIELDS)
    assert caught.value.errcode == 45011 and is_transient(caught.value)
    assert classify_error(caught.value) == ("transient", "接口调用过于频繁（45011）")
    assert fake.messages == []
    await api.send_template(DONOR, TID, FIELDS)
    assert len(fake.messages) == 1


async def test_a_resend_with_the_same_client_msg_id_reaches_the_user_once(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    """A worker that dies after sending and before recording sends the row again."""
    api = make_api()
    first = await api.send_template(DONOR, TID, FIELDS, client_msg_id="donorbot-17")
    again = await make_api().send_template(DONOR, TID, FIELDS, client_msg_id="donorbot-17")
    assert again["msgid"] == first["msgid"]
    assert len(fake.messages) == 1
    assert fake.stats()["dropped_repeats"] == 1


async def test_daily_quota_is_a_quota_error_not_a_transient_one(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    fake.set_quota(TEMPLATE, 3, appid=APPID)
    api = make_api()
    for n in range(3):
        await api.send_template(f"user{n}", TID, FIELDS)
    with pytest.raises(WeChatAPIError) as caught:
        await api.send_template("user3", TID, FIELDS)
    assert caught.value.errcode == 45009
    assert classify_error(caught.value) == ("quota", "今日接口调用次数已达上限（45009）")
    assert is_quota(caught.value) and not is_transient(caught.value)
    assert len(fake.messages) == 3


async def test_a_minute_of_5xx_is_transport_errors_then_success(
    fake: FakeWeChat, make_api: MakeAPI, clock: FixedClock
) -> None:
    api = make_api()
    await api.access_token()
    fake.add_fault(TEMPLATE, Fault(status=502, seconds=60))
    for _ in range(4):
        with pytest.raises(WeChatTransportError) as caught:
            await api.send_template(DONOR, TID, FIELDS)
        assert is_transient(caught.value) and "HTTP 502" in permanent_reason(caught.value)
        clock.advance(15)
    await api.send_template(DONOR, TID, FIELDS)
    assert len(fake.messages) == 1 and fake.token_requests == 1


async def test_users_who_left_fail_permanently_with_a_readable_reason(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    api = make_api()
    fake.add_fault(TEMPLATE, Fault(errcode=43004, openids=frozenset({"oGone1", "oGone2"})))
    fake.set_user_state(APPID, "oBlocker", "blocked")
    outcomes: dict[str, tuple[str, str]] = {}
    for user in ("oGone1", "oStaying", "oGone2", "oBlocker"):
        try:
            await api.send_template(user, TID, FIELDS)
            outcomes[user] = ("sent", "")
        except WeChatAPIError as exc:
            outcomes[user] = classify_error(exc)
    assert outcomes == {
        "oGone1": ("permanent", "用户未关注或已取消关注（43004）"),
        "oStaying": ("sent", ""),
        "oGone2": ("permanent", "用户未关注或已取消关注（43004）"),
        "oBlocker": ("permanent", "用户已将公众号拉黑（43019）"),
    }
    assert [m["touser"] for m in fake.messages] == ["oStaying"]


async def test_a_dropped_template_send_is_a_transport_error(
    fake: FakeWeChat, make_api: MakeAPI
) -> None:
    api = make_api()
    await api.access_token()
    fake.add_fault(TEMPLATE, Fault(drop=True))
    with pytest.raises(WeChatTransportError) as caught:
        await api.send_template(DONOR, TID, FIELDS)
    assert classify_error(caught.value)[0] == "transient"
    assert fake.messages == []


@pytest.mark.parametrize(
    ("errcode", "kind", "reason"),
    [
        (-1, "transient", "微信系统繁忙"),
        (45011, "transient", "接口调用过于频繁"),
        (40001, "transient", "access_token 无效或不是最新的"),  # survived one refresh
        (45009, "quota", "今日接口调用次数已达上限"),
        (43004, "permanent", "用户未关注或已取消关注"),
        (43019, "permanent", "用户已将公众号拉黑"),
        (48002, "permanent", "用户拒收消息"),
        (47003, "permanent", "模板参数不合法"),
        (45015, "permanent", "客服消息时限已过"),
        (45047, "permanent", "客服消息已达本次互动的条数上限"),
        (43101, "permanent", "用户拒绝接收订阅消息"),
        (40037, "permanent", "模板 ID 无效"),
        (99999, "permanent", "微信接口返回错误"),
    ],
)
def test_errcode_classification(errcode: int, kind: str, reason: str) -> None:
    exc = WeChatAPIError(errcode, "whatever WeChat said")
    got_kind, got_reason = classify_error(exc)
    assert got_kind == kind
    assert got_reason.startswith(reason) and got_reason.endswith(f"（{errcode}）")
    assert permanent_reason(exc) == got_reason
    assert is_transient(exc) == (kind == "transient")
    assert is_quota(exc) == (kind == "quota")


@pytest.mark.parametrize(
    "exc", [WeChatTransportError("POST /x: HTTP 503"), TimeoutError(), ConnectionResetError()]
)
def test_transport_failures_are_transient(exc: Exception) -> None:
    kind, reason = classify_error(exc)
    assert kind == "transient" and reason.startswith("微信接口暂时无法访问")
