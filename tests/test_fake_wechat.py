"""The fake WeChat behaves as WeChat's documentation says, so tests built on it mean something."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, unused_port

from bot.clock import FixedClock
from bot.fake_wechat import FakeWeChat, create_fake_app, run_fake

APPID, SECRET = "wx2c2769f8efd9abc2", "mp-secret-0123456789abcdef"
CORPID, CORPSECRET = "ww0a1b2c3d4e5f6789", "corp-secret-abcdef0123456789"
DONOR = "oDonor_openid_0001"
SEND = "/cgi-bin/message/custom/send"


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
        assert await response.json() == {"token_requests": 1, "messages": 3}
    async with client.post("/_fake/reset") as response:
        assert response.status == 200
    async with client.get("/_fake/stats") as response:
        assert await response.json() == {"token_requests": 0, "messages": 0}
    assert (await send(client, token, text("after reset")))["errcode"] == 40001


async def test_run_fake_serves_until_cancelled() -> None:
    port = unused_port()
    server = asyncio.create_task(run_fake("127.0.0.1", port, FakeWeChat({APPID: SECRET})))
    url = f"http://127.0.0.1:{port}/_fake/stats"
    async with aiohttp.ClientSession() as http:
        for _ in range(50):
            try:
                async with http.get(url) as response:
                    assert await response.json() == {"token_requests": 0, "messages": 0}
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
