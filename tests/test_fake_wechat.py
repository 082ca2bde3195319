"""The fake WeChat behaves as WeChat's documentation says, so tests built on it mean something."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, unused_port

from bot.clock import FixedClock
from bot.fake_wechat import FakeWeChat, create_fake_app, run_fake

APPID, SECRET = "wx2c2769f8efd9abc2", "mp-secret-0123456789abcdef"
CORPID, CORPSECRET = "ww0a1b2c3d4e5f6789", "corp-secret-abcdef0123456789"
DONOR = "oDonor_openid_0001"
SEND = "/cgi-bin/message/custom/send"
EMPTY_STATS = {
    "token_requests": 0,
    "force_refreshes": 0,
    "messages": 0,
    "accepted": {},
    "recipients": 0,
    "repeat_recipients": 0,
    "dropped_repeats": 0,
    "reports_delivered": 0,
    "reports_failed": 0,
}


@pytest.fixture
def fake(clock: FixedClock) -> FakeWeChat:
    return FakeWeChat({APPID: SECRET}, clock=clock, wecom={CORPID: CORPSECRET})


@pytest.fixture
async def client(fake: FakeWeChat, aiohttp_client: Any) -> TestClient[Any, Any]:
    test_client: TestClient[Any, Any] = await aiohttp_client(create_fake_app(fake))
    return test_client


async def stable(client: TestClient[Any, Any], **overrides: Any) -> dict[str, Any]:
    body = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET, **overrides}
    async with client.post("/cgi-bin/stable_token", json=body) as response:
        answer: dict[str, Any] = await response.json()
        return answer


async def plain_token(client: TestClient[Any, Any], **overrides: str) -> dict[str, Any]:
    query = {"grant_type": "client_credential", "appid": APPID, "secret": SECRET, **overrides}
    async with client.get("/cgi-bin/token", params=query) as response:
        answer: dict[str, Any] = await response.json()
        return answer


async def send(
    client: TestClient[Any, Any], token: str, body: dict[str, Any] | bytes, path: str = SEND
) -> dict[str, Any]:
    data = body if isinstance(body, bytes) else json.dumps(body, ensure_ascii=False).encode()
    async with client.post(path, params={"access_token": token}, data=data) as response:
        answer: dict[str, Any] = await response.json()
        return answer


def text(content: str, touser: str = DONOR) -> dict[str, Any]:
    return {"touser": touser, "msgtype": "text", "text": {"content": content}}


async def test_token_endpoint_replaces_the_token_and_the_old_one_lives_five_minutes(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    fake.enforce_window = False
    first = (await plain_token(client))["access_token"]
    second = (await plain_token(client))["access_token"]
    assert first != second
    assert (await send(client, first, text("grace")))["errcode"] == 0
    clock.advance(301)
    assert (await send(client, first, text("late")))["errcode"] == 40001
    assert (await send(client, second, text("new")))["errcode"] == 0
    assert fake.token_requests == 2


async def test_stable_token_is_stable_and_isolated_from_the_token_endpoint(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    fake.enforce_window = False
    first = await stable(client)
    clock.advance(100)
    again = await stable(client)
    assert again["access_token"] == first["access_token"]
    assert (first["expires_in"], again["expires_in"]) == (7200, 7100)
    await plain_token(client)  # documented: the two kinds of token do not affect each other
    assert (await send(client, first["access_token"], text("still fine")))["errcode"] == 0


async def test_stable_token_renews_in_its_last_five_minutes_without_breaking_the_old(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    fake.enforce_window = False
    old = (await stable(client))["access_token"]
    clock.advance(7200 - 200)
    renewed = await stable(client)
    assert renewed["access_token"] != old and renewed["expires_in"] == 7200
    assert (await send(client, old, text("handover")))["errcode"] == 0
    clock.advance(201)
    assert (await send(client, old, text("expired")))["errcode"] == 42001
    assert (await send(client, renewed["access_token"], text("ok")))["errcode"] == 0


async def test_force_refresh_revokes_the_old_token_and_is_limited(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    fake.enforce_window = False
    old = (await stable(client))["access_token"]
    forced = (await stable(client, force_refresh=True))["access_token"]
    assert forced != old
    assert (await send(client, old, text("revoked")))["errcode"] == 40001
    # documented: a second force refresh within 30 s refreshes nothing
    assert (await stable(client, force_refresh=True))["access_token"] == forced
    for _ in range(19):
        clock.advance(31)
        assert "access_token" in await stable(client, force_refresh=True)
    clock.advance(31)
    assert (await stable(client, force_refresh=True))["errcode"] == 45009  # 21st today
    clock.advance(6 * 3600)  # 18:10 Beijing time becomes 00:10 the next day
    assert "access_token" in await stable(client, force_refresh=True)


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"appid": "wx0000000000000000"}, 40013),
        ({"secret": "wrong"}, 40125),
        ({"grant_type": "password"}, 40002),
        ({"appid": ""}, 41002),
        ({"secret": ""}, 41004),
    ],
)
async def test_bad_credentials_get_wechats_errcodes(
    client: TestClient[Any, Any], fake: FakeWeChat, overrides: dict[str, str], errcode: int
) -> None:
    assert (await stable(client, **overrides))["errcode"] == errcode
    assert (await plain_token(client, **overrides))["errcode"] == errcode
    assert fake.token_requests == 0


async def test_wecom_token_is_reused_until_it_expires(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    async def gettoken(corpid: str = CORPID, corpsecret: str = CORPSECRET) -> dict[str, Any]:
        query = {"corpid": corpid, "corpsecret": corpsecret}
        async with client.get("/cgi-bin/gettoken", params=query) as response:
            answer: dict[str, Any] = await response.json()
            return answer

    first = await gettoken()
    assert first["errcode"] == 0 and (await gettoken())["access_token"] == first["access_token"]
    clock.advance(7200)
    assert (await gettoken())["access_token"] != first["access_token"]
    assert (await gettoken(corpsecret="wrong"))["errcode"] == 40001
    assert (await gettoken(corpid="ww-unknown"))["errcode"] == 40013


async def test_access_token_errors(client: TestClient[Any, Any], clock: FixedClock) -> None:
    token = (await stable(client))["access_token"]
    assert (await send(client, "", text("x")))["errcode"] == 41001
    assert (await send(client, "made-up", text("x")))["errcode"] == 40001
    assert (await send(client, token, text("x"), "/cgi-bin/message/send"))["errcode"] == 40014
    clock.advance(7200)
    assert (await send(client, token, text("x")))["errcode"] == 42001


@pytest.mark.parametrize(
    ("body", "errcode"),
    [
        (b"", 44002),
        (b"{not json", 47001),
        (b"[]", 47001),
        ({"msgtype": "text", "text": {"content": "x"}}, 47001),
        ({"touser": DONOR, "msgtype": "text"}, 47001),
        ({"touser": DONOR, "msgtype": "sms", "sms": {"content": "x"}}, 40008),
        ({"touser": DONOR, "msgtype": "text", "text": {"content": ""}}, 44004),
    ],
    ids=["empty", "not-json", "not-object", "no-touser", "no-text", "bad-type", "no-content"],
)
async def test_malformed_messages_are_refused(
    client: TestClient[Any, Any], fake: FakeWeChat, body: dict[str, Any] | bytes, errcode: int
) -> None:
    fake.interact(APPID, DONOR)
    token = (await stable(client))["access_token"]
    assert (await send(client, token, body))["errcode"] == errcode
    assert fake.messages == []


async def test_unicode_escapes_reach_the_user_literally(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    """WeChat does not decode \\uXXXX in message JSON: the donor would read the escapes."""
    fake.enforce_window = False
    token = (await stable(client))["access_token"]
    ascii_body = json.dumps(text("献血"), ensure_ascii=True).encode()
    assert (await send(client, token, ascii_body))["errcode"] == 0
    assert (await send(client, token, text("路径 C:\\users 与 献血")))["errcode"] == 0
    assert [m["content"] for m in fake.messages] == ["\\u732e\\u8840", "路径 C:\\users 与 献血"]


async def test_window_is_per_user_and_per_interaction(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    async with client.post("/_fake/interactions", json={"appid": APPID, "openid": DONOR}) as r:
        assert r.status == 200
    clock.advance(47 * 3600)
    token = (await stable(client))["access_token"]
    assert (await send(client, token, text("47 h later")))["errcode"] == 0
    assert (await send(client, token, text("other user", "oOther")))["errcode"] == 45015
    async with client.post("/_fake/interactions", json={"appid": "wx-nope", "openid": DONOR}) as r:
        assert r.status == 400


async def test_wecom_send_has_no_window_and_cuts_long_text(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    async with client.get(
        "/cgi-bin/gettoken", params={"corpid": CORPID, "corpsecret": CORPSECRET}
    ) as response:
        token = (await response.json())["access_token"]
    path = "/cgi-bin/message/send"
    body = {**text("献" * 1000, "ZhangSan"), "agentid": 1000002}
    answer = await send(client, token, body, path)
    assert answer["errcode"] == 0 and answer["msgid"] == str(fake.messages[0]["msgid"])
    assert fake.messages[0]["content"] == "献" * 682  # 2048 bytes, no half character
    assert (await send(client, token, text("x", "ZhangSan"), path))["errcode"] == 41011
    assert (await send(client, token, {**text("x", ""), "agentid": 1}, path))["errcode"] == 81013


async def test_faults_apply_in_order_per_path(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    fake.enforce_window = False
    token = (await stable(client))["access_token"]
    for fault in (
        {"path": SEND, "errcode": 45011, "times": 2},
        {"path": SEND, "status": 500},
        {"path": "/cgi-bin/stable_token", "errcode": -1},
    ):
        async with client.post("/_fake/faults", json=fault) as response:
            assert response.status == 200
    assert [(await send(client, token, text("a")))["errcode"] for _ in range(2)] == [45011, 45011]
    async with client.post(SEND, params={"access_token": token}, json=text("b")) as response:
        assert response.status == 500
    assert (await send(client, token, text("c")))["errcode"] == 0
    assert (await stable(client))["errcode"] == -1
    assert [m["content"] for m in fake.messages] == ["c"]


async def test_dropped_connection_and_latency_faults(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    fake.enforce_window = False
    token = (await stable(client))["access_token"]
    for fault in ({"path": SEND, "drop": True}, {"path": SEND, "latency": 0.3}):
        async with client.post("/_fake/faults", json=fault) as response:
            assert response.status == 200
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(client, token, text("lost"))
    started = time.monotonic()
    assert (await send(client, token, text("slow")))["errcode"] == 0
    assert time.monotonic() - started >= 0.3
    assert [m["content"] for m in fake.messages] == ["slow"]


@pytest.mark.parametrize(
    "fault", [{"errcode": 45011}, {"path": SEND}, {"path": SEND, "status": 500, "times": 0}]
)
async def test_a_malformed_fault_is_refused(
    client: TestClient[Any, Any], fault: dict[str, Any]
) -> None:
    async with client.post("/_fake/faults", json=fault) as response:
        assert response.status == 400


async def test_admin_messages_stats_and_reset(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    fake.enforce_window = False
    token = (await stable(client))["access_token"]
    for user in ("oA", "oB", "oA"):
        await send(client, token, text(f"to {user}", user))
    async with client.get("/_fake/messages", params={"touser": "oA"}) as response:
        messages = (await response.json())["messages"]
    assert [m["content"] for m in messages] == ["to oA", "to oA"]
    assert messages[0]["msgid"] < messages[1]["msgid"]
    async with client.get("/_fake/stats") as response:
        assert await response.json() == {
            "token_requests": 1,
            "force_refreshes": 0,
            "messages": 3,
            "accepted": {SEND: 3},
            "recipients": 2,
            "repeat_recipients": 1,
            "dropped_repeats": 0,
            "reports_delivered": 0,
            "reports_failed": 0,
        }
    async with client.post("/_fake/reset") as response:
        assert response.status == 200
    async with client.get("/_fake/stats") as response:
        assert await response.json() == EMPTY_STATS
    assert (await send(client, token, text("after reset")))["errcode"] == 40001


async def test_run_fake_serves_until_cancelled() -> None:
    port = unused_port()
    server = asyncio.create_task(run_fake("127.0.0.1", port, FakeWeChat({APPID: SECRET})))
    url = f"http://127.0.0.1:{port}/_fake/stats"
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            try:
                async with http.get(url) as response:
                    assert await response.json() == EMPTY_STATS
                    break
            except aiohttp.ClientConnectionError:
                await asyncio.sleep(0.02)
        else:
            pytest.fail("run_fake never started listening")
        server.cancel()
        with pytest.raises(asyncio.CancelledError):
            await server
        with pytest.raises(aiohttp.ClientConnectionError):
            async with http.get(url):
                pass


# -- template messages, subscription notices, users, quotas, repeats --------------------

TEMPLATE = "/cgi-bin/message/template/send"
BIZSEND = "/cgi-bin/message/subscribe/bizsend"
TID = "tpl-drive-reminder-0001"


def template(touser: str = DONOR, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": touser,
        "template_id": TID,
        "data": {"keyword1": {"value": "慈利县"}, "keyword2": {"value": "3月"}},
    }
    body.update(overrides)
    return body


async def admin(client: TestClient[Any, Any], path: str, body: dict[str, Any]) -> int:
    async with client.post(path, json=body) as response:
        return response.status


async def stats(client: TestClient[Any, Any]) -> dict[str, Any]:
    async with client.get("/_fake/stats") as response:
        answer: dict[str, Any] = await response.json()
        return answer


async def test_template_message_is_recorded_as_the_follower_sees_it(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    token = (await stable(client))["access_token"]
    long_value = "张家界市人民医院(含市妇幼保健院)三月份团体献血"  # 25 characters
    data = {
        "first": {"value": "献血提醒"},
        "keyword1": {"value": long_value},
        "keyword2": {"value": "3月", "color": "#173177"},
        "remark": {"value": "感谢您的爱心"},
    }
    answer = await send(client, token, template(data=data, url="https://example.org"), TEMPLATE)
    assert answer["errcode"] == 0
    [message] = fake.messages
    assert message["msgid"] == answer["msgid"] and message["msgtype"] == "template"
    assert message["payload"]["data"]["keyword1"]["value"] == long_value  # the full text
    # since May 2023: no first/remark, 20 characters then 「…」
    assert message["shown"] == {"keyword1": long_value[:20] + "…", "keyword2": "3月"}
    assert message["content"] == f"keyword1：{long_value[:20]}…\nkeyword2：3月"
    assert fake.stats()["accepted"] == {TEMPLATE: 1}


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"touser": ""}, 40003),
        ({"touser": None}, 40003),
        ({"template_id": ""}, 40037),
        ({"template_id": None}, 40037),
        ({"data": {"keyword1": "慈利县"}}, 47003),
        ({"data": {"keyword1": {"value": 3}}}, 47003),
        ({"data": {"keyword1": {"val": "x"}}}, 47003),
        ({"data": ["keyword1"]}, 47001),
        ({"url": 5}, 47001),
    ],
    ids=[
        "empty-touser",
        "no-touser",
        "empty-template",
        "no-template",
        "bare-value",
        "number-value",
        "no-value",
        "data-list",
        "url-number",
    ],
)
async def test_malformed_template_messages_are_refused(
    client: TestClient[Any, Any], fake: FakeWeChat, overrides: dict[str, Any], errcode: int
) -> None:
    token = (await stable(client))["access_token"]
    assert (await send(client, token, template(**overrides), TEMPLATE))["errcode"] == errcode
    assert fake.messages == []


async def test_template_send_checks_the_access_token(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    token = (await stable(client))["access_token"]
    assert (await send(client, "made-up", template(), TEMPLATE))["errcode"] == 40001
    clock.advance(7200)
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 42001


async def test_user_states_decide_what_gets_through(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    fake.enforce_window = False
    token = (await stable(client))["access_token"]
    for state, template_errcode, custom_errcode in [
        ("unsubscribed", 43004, 45015),
        ("blocked", 43019, 43019),
        ("refused", 48002, 48002),
        ("invalid", 40003, 40003),
    ]:
        body = {"appid": APPID, "openid": DONOR, "state": state}
        assert await admin(client, "/_fake/users", body) == 200
        assert (await send(client, token, template(), TEMPLATE))["errcode"] == template_errcode
        assert (await send(client, token, text("hi")))["errcode"] == custom_errcode
    assert (await send(client, token, template("oSomeoneElse"), TEMPLATE))["errcode"] == 0
    follower = {"appid": APPID, "openid": DONOR, "state": "follower"}
    assert await admin(client, "/_fake/users", follower) == 200
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 0
    assert [m["touser"] for m in fake.messages] == ["oSomeoneElse", DONOR]


@pytest.mark.parametrize(
    "body",
    [
        {"appid": "wx-unknown", "openid": DONOR, "state": "blocked"},
        {"appid": APPID, "openid": DONOR, "state": "angry"},
        {"appid": APPID, "openid": DONOR, "state": "subscribed_template:"},
        {"appid": APPID, "openid": DONOR, "state": f"subscribed_template:{TID}", "times": 0},
        {"appid": APPID, "openid": "", "state": "blocked"},
        {"appid": APPID, "state": "blocked"},
    ],
)
async def test_a_malformed_user_state_is_refused(
    client: TestClient[Any, Any], body: dict[str, Any]
) -> None:
    assert await admin(client, "/_fake/users", body) == 400


async def test_a_repeated_client_msg_id_is_dropped_for_ten_minutes(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    token = (await stable(client))["access_token"]
    first = await send(client, token, template(client_msg_id="delivery-42"), TEMPLATE)
    clock.advance(599)
    again = await send(client, token, template(client_msg_id="delivery-42"), TEMPLATE)
    assert again == {"errcode": 0, "errmsg": "ok", "msgid": first["msgid"]}
    other_user = await send(
        client, token, template("oOther", client_msg_id="delivery-42"), TEMPLATE
    )
    no_id = await send(client, token, template(), TEMPLATE)
    assert len({first["msgid"], other_user["msgid"], no_id["msgid"]}) == 3
    clock.advance(2)  # 601 s after the first send: WeChat no longer promises to drop it
    late = await send(client, token, template(client_msg_id="delivery-42"), TEMPLATE)
    assert late["msgid"] != first["msgid"]
    assert [m["touser"] for m in fake.messages] == [DONOR, "oOther", DONOR, DONOR]
    got = await stats(client)
    assert (got["dropped_repeats"], got["recipients"], got["repeat_recipients"]) == (1, 2, 1)
    assert fake.quota_left(APPID, TEMPLATE) == 100_000 - 4  # a dropped repeat costs nothing


async def test_daily_quota_runs_out_and_comes_back_on_the_next_beijing_day(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    assert fake.quota_left(APPID, TEMPLATE) == 100_000  # the documented default
    assert await admin(client, "/_fake/quota", {"path": TEMPLATE, "limit": 2}) == 200
    token = (await stable(client))["access_token"]
    answers = [await send(client, token, template(f"o{n}"), TEMPLATE) for n in range(3)]
    assert [a["errcode"] for a in answers] == [0, 0, 45009]
    clock.advance(5 * 3600 + 59 * 60)  # 10:00 UTC is 18:00 in Beijing; now 23:59 there
    token = (await stable(client))["access_token"]
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 45009
    clock.advance(60)  # 00:00 in Beijing (16:00 UTC): a new day
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 0
    assert len(fake.messages) == 3


async def test_quotas_are_per_account_and_set_by_constructor_or_admin(
    clock: FixedClock, aiohttp_client: Any
) -> None:
    other, other_secret = "wx00000000000000aa", "other-secret"
    fake = FakeWeChat({APPID: SECRET, other: other_secret}, clock, quotas={TEMPLATE: 1})
    client = await aiohttp_client(create_fake_app(fake))
    assert (
        await admin(client, "/_fake/quota", {"path": TEMPLATE, "limit": 2, "appid": other}) == 200
    )
    assert (
        await admin(client, "/_fake/quota", {"path": TEMPLATE, "limit": 1, "appid": "wx?"}) == 400
    )
    assert await admin(client, "/_fake/quota", {"path": TEMPLATE, "limit": -1}) == 400
    token = (await stable(client))["access_token"]
    other_token = (await stable(client, appid=other, secret=other_secret))["access_token"]
    assert [(await send(client, token, template(), TEMPLATE))["errcode"] for _ in "ab"] == [
        0,
        45009,
    ]
    assert [(await send(client, other_token, template(), TEMPLATE))["errcode"] for _ in "abc"] == [
        0,
        0,
        45009,
    ]
    assert await admin(client, "/_fake/quota", {"path": TEMPLATE, "limit": None}) == 200
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 0


def subscribe_body(touser: str = DONOR, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "touser": touser,
        "template_id": TID,
        "page": "pages/drive/index",
        "data": {"thing1": {"value": "慈利县三月献血"}, "time2": {"value": "2018-03-20"}},
    }
    body.update(overrides)
    return body


async def test_subscription_notices_need_the_users_acceptance(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    token = (await stable(client))["access_token"]
    assert (await send(client, token, subscribe_body(), BIZSEND))["errcode"] == 43101
    accept = {"appid": APPID, "openid": DONOR, "state": f"subscribed_template:{TID}"}
    assert await admin(client, "/_fake/users", accept) == 200  # one-time: one notice
    answer = await send(client, token, subscribe_body(), BIZSEND)
    assert answer["errcode"] == 0 and answer["msgid"] == fake.messages[0]["msgid"]
    assert (await send(client, token, subscribe_body(), BIZSEND))["errcode"] == 43101
    other_template = subscribe_body(template_id="tpl-other")
    assert await admin(client, "/_fake/users", {**accept, "times": None}) == 200  # long-term
    for _ in range(3):
        assert (await send(client, token, subscribe_body(), BIZSEND))["errcode"] == 0
    assert (await send(client, token, other_template, BIZSEND))["errcode"] == 43101
    withdraw = {**accept, "state": f"unsubscribed_template:{TID}"}
    assert await admin(client, "/_fake/users", withdraw) == 200
    assert (await send(client, token, subscribe_body(), BIZSEND))["errcode"] == 43101
    [first, *_] = fake.messages
    assert (first["msgtype"], len(fake.messages)) == ("subscribe", 4)
    assert first["content"] == "thing1：慈利县三月献血\ntime2：2018-03-20"


@pytest.mark.parametrize(
    ("overrides", "errcode"),
    [
        ({"touser": ""}, 40003),
        ({"template_id": ""}, 40037),
        ({"data": {"thing1": {"value": "献" * 21}}}, 47003),  # thing: at most 20 characters
        ({"data": {"phrase3": {"value": "已经预约成功"}}}, 47003),  # phrase: at most 5
        ({"data": {"thing1": "x"}}, 47003),
        ({"page": 3}, 47001),
    ],
)
async def test_malformed_subscription_notices_are_refused(
    client: TestClient[Any, Any], fake: FakeWeChat, overrides: dict[str, Any], errcode: int
) -> None:
    fake.set_user_state(APPID, DONOR, f"subscribed_template:{TID}", times=None)
    token = (await stable(client))["access_token"]
    assert (await send(client, token, subscribe_body(**overrides), BIZSEND))["errcode"] == errcode
    assert fake.messages == []


async def test_a_gone_or_blocking_user_gets_no_subscription_notice(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    fake.set_user_state(APPID, DONOR, f"subscribed_template:{TID}", times=None)
    token = (await stable(client))["access_token"]
    for state in ("unsubscribed", "blocked"):
        fake.set_user_state(APPID, DONOR, state)
        assert (await send(client, token, subscribe_body(), BIZSEND))["errcode"] == 43101
    assert fake.messages == []


# -- faults: time-based and per user ----------------------------------------------------


async def test_a_time_based_fault_lasts_its_span_by_the_fakes_clock(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    token = (await stable(client))["access_token"]
    outage = {"path": TEMPLATE, "status": 503, "seconds": 60}
    assert await admin(client, "/_fake/faults", outage) == 200
    assert await admin(client, "/_fake/faults", {"path": TEMPLATE, "errcode": -1}) == 200
    for _ in range(3):
        async with client.post(TEMPLATE, params={"access_token": token}, json=template()) as r:
            assert r.status == 503
        clock.advance(19)
    clock.advance(3)  # 60 s after the fault began
    # the count-based fault queued behind it was not used up during the outage
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == -1
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 0
    assert (await send(client, token, text("x")))["errcode"] == 45015  # other paths unaffected
    assert len(fake.messages) == 1


async def test_a_per_user_fault_hits_only_those_users_until_cleared(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    token = (await stable(client))["access_token"]
    fault = {"path": TEMPLATE, "errcode": 43004, "openids": ["oGone1", "oGone2"]}
    assert await admin(client, "/_fake/faults", fault) == 200
    for _ in range(2):
        for user in ("oGone1", "oGone2"):
            assert (await send(client, token, template(user), TEMPLATE))["errcode"] == 43004
    assert (await send(client, token, template("oStaying"), TEMPLATE))["errcode"] == 0
    # a token error still comes first, as at WeChat
    assert (await send(client, "made-up", template("oGone1"), TEMPLATE))["errcode"] == 40001
    async with client.delete("/_fake/faults", params={"path": TEMPLATE}) as response:
        assert response.status == 200
    assert (await send(client, token, template("oGone1"), TEMPLATE))["errcode"] == 0
    assert [m["touser"] for m in fake.messages] == ["oStaying", "oGone1"]


async def test_a_per_user_fault_can_be_time_limited_and_drop_connections(
    client: TestClient[Any, Any], fake: FakeWeChat, clock: FixedClock
) -> None:
    token = (await stable(client))["access_token"]
    fault = {"path": TEMPLATE, "drop": True, "openids": [DONOR], "seconds": 30}
    assert await admin(client, "/_fake/faults", fault) == 200
    with pytest.raises(aiohttp.ServerDisconnectedError):
        await send(client, token, template(), TEMPLATE)
    clock.advance(30)
    assert (await send(client, token, template(), TEMPLATE))["errcode"] == 0


@pytest.mark.parametrize(
    "fault",
    [
        {"path": TEMPLATE, "status": 500, "seconds": 0},
        {"path": TEMPLATE, "errcode": 43004, "openids": []},
        {"path": TEMPLATE, "errcode": 43004, "openids": "oGone"},
        {"path": TEMPLATE, "openids": ["oGone"]},
    ],
)
async def test_a_malformed_timed_or_user_fault_is_refused(
    client: TestClient[Any, Any], fault: dict[str, Any]
) -> None:
    assert await admin(client, "/_fake/faults", fault) == 400


# -- reading what was sent --------------------------------------------------------------


async def test_admin_messages_filters_and_pages(
    client: TestClient[Any, Any], fake: FakeWeChat
) -> None:
    fake.enforce_window = False
    token = (await stable(client))["access_token"]
    for n in range(6):
        user = "oA" if n % 2 == 0 else "oB"
        if n < 3:
            await send(client, token, template(user), TEMPLATE)
        else:
            await send(client, token, text(f"{n}", user))

    async def query(**params: Any) -> dict[str, Any]:
        async with client.get("/_fake/messages", params=params) as response:
            assert response.status == 200
            answer: dict[str, Any] = await response.json()
            return answer

    everything = await query()
    assert [m["seq"] for m in everything["messages"]] == list(range(6))
    assert everything["next"] == 6
    to_a = await query(touser="oA")
    assert [m["seq"] for m in to_a["messages"]] == [0, 2, 4]
    assert [m["seq"] for m in (await query(touser="oA", since=1))["messages"]] == [2, 4]
    assert [m["seq"] for m in (await query(msgtype="text"))["messages"]] == [3, 4, 5]
    page = await query(msgtype="template", limit=2)
    assert [m["seq"] for m in page["messages"]] == [0, 1] and page["next"] == 2
    rest = await query(msgtype="template", since=page["next"], limit=2)
    assert [m["seq"] for m in rest["messages"]] == [2] and rest["next"] == 6
    assert (await query(touser="oA", appid="wx-other"))["messages"] == []
    assert (await query(touser="nobody"))["messages"] == []
    async with client.get("/_fake/messages", params={"limit": "ten"}) as response:
        assert response.status == 400
    fake.messages.clear()  # as tests do between phases: the index follows
    await send(client, token, template("oB"), TEMPLATE)
    assert [m["seq"] for m in (await query(touser="oB"))["messages"]] == [0]
    assert (await stats(client))["accepted"] == {TEMPLATE: 4, SEND: 3}


async def test_stats_count_token_requests_and_force_refreshes(
    client: TestClient[Any, Any], clock: FixedClock
) -> None:
    await stable(client)
    await stable(client, force_refresh=True)
    await stable(client, force_refresh=True)  # within 30 s: not a refresh
    clock.advance(31)
    await stable(client, force_refresh=True)
    got = await stats(client)
    assert (got["token_requests"], got["force_refreshes"]) == (4, 2)


async def test_recording_stays_cheap_for_a_large_broadcast(fake: FakeWeChat) -> None:
    """Recording and per-recipient lookups do not scan the log (100k sends at >= 1,000/s)."""
    started = time.perf_counter()
    for n in range(100_000):
        body = {"touser": f"o{n}", "template_id": TID, "data": {}}
        fake.record(APPID, body, "", path=TEMPLATE, msgtype="template")
    for n in range(0, 100_000, 10):
        assert len(fake.messages.select(touser=f"o{n}")) == 1
    assert time.perf_counter() - started < 20  # about 2 s here; a scan per send takes minutes
    got = fake.stats()
    assert (got["recipients"], got["repeat_recipients"], got["accepted"]) == (
        100_000,
        0,
        {TEMPLATE: 100_000},
    )


# -- TEMPLATESENDJOBFINISH --------------------------------------------------------------


async def test_template_send_reports_job_finished_to_the_account_signed(
    client: TestClient[Any, Any], fake: FakeWeChat, aiohttp_server: Any, clock: FixedClock
) -> None:
    from bot.wechat.message import parse_xml
    from bot.wechat.signature import signature_ok

    received: list[tuple[dict[str, str], bytes]] = []
    arrived = asyncio.Event()

    async def account_server(request: web.Request) -> web.Response:
        received.append((dict(request.query), await request.read()))
        arrived.set()
        return web.Response(text="success")

    receiver = web.Application()
    receiver.router.add_post("/wechat/zjj", account_server)
    server = await aiohttp_server(receiver)
    callback = {"appid": APPID, "url": str(server.make_url("/wechat/zjj")), "token": "spamtest"}
    assert await admin(client, "/_fake/callbacks", callback) == 200
    assert await admin(client, "/_fake/callbacks", {**callback, "url": "ftp://x"}) == 400
    token = (await stable(client))["access_token"]
    answer = await send(client, token, template(), TEMPLATE)
    await asyncio.wait_for(arrived.wait(), 5)
    [(query, body)] = received
    assert signature_ok(("spamtest", query["timestamp"], query["nonce"]), query["signature"])
    assert query["openid"] == DONOR and query["timestamp"] == str(int(clock.timestamp()))
    event = parse_xml(body)
    assert (event["Event"], event["FromUserName"]) == ("TEMPLATESENDJOBFINISH", DONOR)
    assert (event["MsgID"], event["Status"]) == (str(answer["msgid"]), "success")
    for _ in range(50):
        if fake.reports_delivered:
            break
        await asyncio.sleep(0.01)
    assert fake.reports_delivered == 1
    assert await admin(client, "/_fake/callbacks", {**callback, "url": None}) == 200
    await send(client, token, template(), TEMPLATE)
    await asyncio.sleep(0.05)
    assert len(received) == 1
