"""Bad input at the webhook: each gets its one clear status, never a 5xx or a traceback."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest

from bot.simulator import text_xml
from bot.wechat.signature import sign

VECTORS = json.loads(
    (Path(__file__).resolve().parents[2] / "shared/testdata/wechat_vectors.json").read_text()
)


@pytest.fixture(autouse=True)
def _no_errors_logged(caplog: pytest.LogCaptureFixture) -> Any:
    """None of these refusals may log an unhandled exception."""
    caplog.set_level(logging.INFO)
    yield
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not errors, [r.getMessage() for r in errors]


async def _post_raw(bot: Any, code: str, query: dict[str, str], body: bytes) -> tuple[int, str]:
    resp = await bot.client.post(f"/wechat/{code}", params=query, data=body)
    text = await resp.text()
    assert "Traceback" not in text
    return resp.status, text


async def test_forged_signature_is_403_without_detail(make_bot: Any) -> None:
    bot = await make_bot()
    query, body = bot.sim("rugao").request(text_xml("o1", "你好"))
    status, text = await _post_raw(bot, "rugao", {**query, "signature": "f" * 40}, body)
    assert status == 403 and text == "forbidden"


async def test_forged_msg_signature_is_403(make_bot: Any) -> None:
    bot = await make_bot()
    query, body = bot.sim("zhangjiajie").request(text_xml("o1", "你好"))
    status, text = await _post_raw(bot, "zhangjiajie", {**query, "msg_signature": "0" * 40}, body)
    assert status == 403 and text == "forbidden"


@pytest.mark.parametrize("offset", [-301, 301, -86400])
async def test_stale_or_future_timestamp_is_403(make_bot: Any, offset: int) -> None:
    bot = await make_bot()
    ts = str(int(bot.clock.timestamp()) + offset)
    query, body = bot.sim("rugao").request(text_xml("o1", "你好"), timestamp=ts)
    status, _ = await _post_raw(bot, "rugao", query, body)
    assert status == 403


async def test_timestamp_at_the_edge_of_the_window_is_accepted(make_bot: Any) -> None:
    bot = await make_bot()
    ts = str(int(bot.clock.timestamp()) - 300)
    query, body = bot.sim("rugao").request(text_xml("o1", "你好"), timestamp=ts)
    status, _ = await _post_raw(bot, "rugao", query, body)
    assert status == 200


async def test_replay_with_a_different_body_is_403(make_bot: Any) -> None:
    bot = await make_bot()
    sim = bot.sim("rugao")
    query, body = sim.request(text_xml("o1", "你好", msg_id=1))
    assert (await _post_raw(bot, "rugao", query, body))[0] == 200
    # same timestamp+nonce+signature: in plain mode the signature does not cover the body
    forged = text_xml("o1", "解绑", msg_id=2)
    status, _ = await _post_raw(bot, "rugao", query, forged)
    assert status == 403


async def test_same_request_again_is_a_retry_not_a_replay(make_bot: Any) -> None:
    bot = await make_bot()
    query, body = bot.sim("rugao").request(text_xml("o1", "你好", msg_id=7))
    first = await _post_raw(bot, "rugao", query, body)
    second = await _post_raw(bot, "rugao", query, body)
    assert first[0] == second[0] == 200
    assert first[1] == second[1]  # the same reply, from the dedup store


async def test_body_over_64_kib_is_413(make_bot: Any) -> None:
    bot = await make_bot()
    query, _ = bot.sim("rugao").request(b"<xml/>")
    status, _ = await _post_raw(bot, "rugao", query, b"<xml>" + b"a" * (64 * 1024) + b"</xml>")
    assert status == 413


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"   ",
        b"hello, not xml",
        b"<xml><ToUserName><![CDATA[gh]]></ToUserName><FromUserName>",
        b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY a "aaaa">]>'
        b"<xml><Content>&a;</Content></xml>",
        b'<!DOCTYPE x SYSTEM "file:///etc/passwd"><xml><MsgType>text</MsgType></xml>',
        b"<xml><FromUserName>o1</FromUserName><Content>hi</Content></xml>",  # no MsgType
        b"<xml><MsgType>text</MsgType><Content>hi</Content></xml>",  # no FromUserName
        b"<notxml><MsgType>text</MsgType></notxml>",
        b"<xml><MsgType>text</MsgType><FromUserName>o</FromUserName>"
        b"<CreateTime>yesterday</CreateTime></xml>",
    ],
    ids=[
        "empty",
        "blank",
        "not-xml",
        "truncated",
        "entity",
        "doctype",
        "no-msgtype",
        "no-from",
        "wrong-root",
        "bad-createtime",
    ],
)
async def test_malformed_bodies_are_400(make_bot: Any, body: bytes) -> None:
    bot = await make_bot()
    query, _ = bot.sim("rugao").request(b"<xml/>")
    status, text = await _post_raw(bot, "rugao", query, body)
    assert status == 400 and text == "bad request"


async def test_malformed_ciphertext_is_400(make_bot: Any) -> None:
    bot = await make_bot()
    sim = bot.sim("zhangjiajie")
    query, _ = sim.request(b"<xml/>")
    for encrypted in ["!!!notbase64!!!", "QUJD", "A" * 64]:
        body = f"<xml><Encrypt><![CDATA[{encrypted}]]></Encrypt></xml>".encode()
        q = {
            **query,
            "msg_signature": sign("token3", query["timestamp"], query["nonce"], encrypted),
        }
        status, _ = await _post_raw(bot, "zhangjiajie", q, body)
        assert status == 400, encrypted


async def test_unknown_jurisdiction_is_404(make_bot: Any) -> None:
    bot = await make_bot()
    query, body = bot.sim("rugao").request(text_xml("o1", "你好"))
    status, _ = await _post_raw(bot, "atlantis", query, body)
    assert status == 404
    resp = await bot.client.get("/wechat/atlantis", params={**query, "echostr": "x"})
    assert resp.status == 404


async def test_missing_query_parameters_are_403(make_bot: Any) -> None:
    bot = await make_bot()
    status, _ = await _post_raw(bot, "rugao", {}, text_xml("o1", "你好"))
    assert status == 403
    odd = {"timestamp": "12abc", "nonce": "<script>", "signature": "x"}
    assert (await _post_raw(bot, "rugao", odd, text_xml("o1", "你好")))[0] == 403


async def test_official_safe_mode_vector_over_http(make_bot: Any) -> None:
    v = VECTORS["official_account_safe_mode"]
    bot = await make_bot(
        jurisdictions={
            "vector": {
                "name": "测试",
                "wechat": {
                    "appid": v["appid"],
                    "token": v["token"],
                    "encoding_aes_key": v["encoding_aes_key"],
                    "mode": "safe",
                },
            }
        }
    )
    bot.clock.set(int(v["timestamp"]))
    query = {
        "timestamp": v["timestamp"],
        "nonce": v["nonce"],
        "signature": sign(v["token"], v["timestamp"], v["nonce"]),
        "msg_signature": v["msg_signature"],
        "encrypt_type": "aes",
    }
    resp = await bot.client.post("/wechat/vector", params=query, data=v["body"].encode())
    assert resp.status == 200
    reply = bot.sim("vector").open_reply(await resp.read())
    assert reply is not None
    assert reply["ToUserName"] == "oyORnuP8q7ou2gfYjqLzSIWZf0rs"  # back to the vector's sender
    assert "可以这样问我" in reply["Content"]


async def test_official_wecom_vectors_over_http(make_bot: Any) -> None:
    v = VECTORS["wecom_safe_mode"]
    wecom = {
        "corp_id": v["corp_id"],
        "agent_id": 218,
        "token": v["token"],
        "encoding_aes_key": v["encoding_aes_key"],
    }
    bot = await make_bot(jurisdictions={"vector": {"name": "测试", "wecom": wecom}})
    vu = v["verify_url"]
    bot.clock.set(int(vu["timestamp"]))
    params = {k: vu[k] for k in ("msg_signature", "timestamp", "nonce", "echostr")}
    resp = await bot.client.get("/wecom/vector", params=params)
    assert resp.status == 200 and await resp.text() == vu["plaintext"]

    m = v["message"]
    bot.clock.set(int(m["timestamp"]))
    params = {k: m[k] for k in ("msg_signature", "timestamp", "nonce")}
    resp = await bot.client.post("/wecom/vector", params=params, data=m["body"].encode())
    assert resp.status == 200
    reply = bot.sim("vector", "wecom").open_reply(await resp.read())
    assert reply is not None and reply["ToUserName"] == "mycreate"


async def test_plain_signature_vector_is_accepted_only_while_fresh(make_bot: Any) -> None:
    v = VECTORS["official_account_plain_signature"]
    account = {"appid": "wx1", "token": v["token"], "mode": "plain"}
    bot = await make_bot(jurisdictions={"vector": {"name": "测试", "wechat": account}})
    query = {"timestamp": v["timestamp"], "nonce": v["nonce"], "signature": v["signature"]}
    body = text_xml("o1", "你好", msg_id=1)
    assert (await _post_raw(bot, "vector", query, body))[0] == 403  # 2024 is stale in 2026
    bot.clock.set(int(v["timestamp"]) + 10)
    status, text = await _post_raw(bot, "vector", query, body)
    assert status == 200 and "可以这样问我" in text


async def test_a_user_typing_a_doctype_is_answered_not_refused(make_bot: Any) -> None:
    """Inside CDATA it is just text; only a real DTD is refused."""
    bot = await make_bot()
    for code in ("rugao", "zhangjiajie"):
        reply = await bot.say(code, "<!DOCTYPE html><!ENTITY x 'y'> 这是什么")
        assert reply is not None and "可以这样问我" in reply
