"""The webhook's fast paths agree with the slow ones they stand in for.

- the flat XML reader (bot/wechat/message.py) gives exactly what expat gives, and
  leaves everything else to expat;
- the inline driver (bot/webhook.py `_Inline`) behaves like a Task running the
  dispatch: results, waits, the budget, cancellation, timeouts, SQLAlchemy's awaits;
- the dispatcher's screens pick the very handler the filters pick one by one;
- the memory lock's timeout holds whichever task runs the waiting code.
"""

from __future__ import annotations

import asyncio
import csv
import string
from datetime import date
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from xml.sax.saxutils import escape

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bot.dispatcher import Handler, build_dispatcher
from bot.errors import BadMessage
from bot.menu import MENU_KEYS
from bot.storage import MemoryStorage
from bot.users import User
from bot.webhook import _Inline
from bot.wechat.message import _flat_fields, _parse_text, parse_message, parse_xml
from bot.wechat.reply import cdata

# ---- the flat XML reader ----------------------------------------------------------------

TAGS = st.sampled_from(
    ["ToUserName", "FromUserName", "CreateTime", "MsgType", "Content", "MsgId", "Event",
     "EventKey", "Recognition", "Label", "A", "x_1", "List"]
)  # fmt: skip
VALUES = st.text(max_size=40) | st.sampled_from(["", " ", "  a b ", "帮助", "a]]>b", "]", "&"])
SPACE = st.sampled_from(["", "", "", " ", "\n", "\t", "  \n"])


def _expat(text: str) -> dict[str, Any] | Exception:
    try:
        return _parse_text(text)
    except BadMessage as exc:
        return exc


@st.composite
def wechat_documents(draw: st.DrawFn) -> str:
    """<xml> with fields written as WeChat (CDATA) or as escaped text, spaced at random."""
    parts = ["<xml>", draw(SPACE)]
    for _ in range(draw(st.integers(1, 8))):
        tag, value = draw(TAGS), draw(VALUES)
        body = cdata(value) if draw(st.booleans()) else escape(value)
        parts += [f"<{tag}>{body}</{tag}>", draw(SPACE)]
    parts += ["</xml>", draw(SPACE)]
    return "".join(parts)


@given(wechat_documents())
@settings(max_examples=400, suppress_health_check=[HealthCheck.too_slow])
def test_flat_reader_agrees_with_expat_on_wechat_documents(doc: str) -> None:
    expected = _expat(doc)
    flat = _flat_fields(doc)
    if flat is not None:  # whatever it reads, expat reads the same
        assert flat == expected
    if isinstance(expected, Exception):
        with pytest.raises(BadMessage):
            parse_xml(doc.encode())
    else:
        assert parse_xml(doc.encode()) == expected


FRAGMENTS = st.sampled_from(
    ["<", ">", "</", "/>", "&", "&amp;", "&#65;", "]", "]]>", "<![CDATA[", "<!--", "-->", "<?x?>",
     "<!DOCTYPE x>", "<A>", "</A>", "<B>", "</B>", "<A x='1'>", "\r", "\r\n", "\x00", "\x01",
     "\x0b", "\ufffe", " ", "\t", "\n", "a", "帮助", "xml", "<xml>", "</xml>", "=", '"']
)  # fmt: skip


@given(st.lists(FRAGMENTS | st.text(alphabet=string.printable, max_size=3), max_size=16))
@settings(max_examples=800, suppress_health_check=[HealthCheck.too_slow])
def test_flat_reader_never_reads_what_expat_would_not(pieces: list[str]) -> None:
    for doc in ("".join(pieces), "<xml>" + "".join(pieces) + "</xml>"):
        flat = _flat_fields(doc)
        if flat is not None:
            assert _expat(doc) == flat, doc


@pytest.mark.parametrize(
    "doc",
    [
        "<xml><A>1\r\n2</A></xml>",  # expat turns CR LF into LF
        "<xml><A>&amp;</A></xml>",
        "<xml><A><B>1</B></A></xml>",
        '<xml><A x="1">1</A></xml>',
        "<xml><A/></xml>",
        "<xml><!-- c --><A>1</A></xml>",
        '<?xml version="1.0"?><xml><A>1</A></xml>',
        "<xml><A><![CDATA[a]]]]><![CDATA[>b]]></A></xml>",
        "<xml><A><![CDATA[a]]> </A></xml>",
        "<xml><A>1</B></xml>",
        "<xml></xml>",
        "<root><A>1</A></root>",
        "<xml><A>\x01</A></xml>",
        "<xml>junk<A>1</A></xml>",
        " <xml><A>1</A></xml>",
    ],
)
def test_anything_unusual_goes_to_expat(doc: str) -> None:
    assert _flat_fields(doc) is None
    expected = _expat(doc)
    if isinstance(expected, Exception):
        with pytest.raises(BadMessage):
            parse_xml(doc.encode())
    else:
        assert parse_xml(doc.encode()) == expected


def test_wechat_text_message_takes_the_fast_path() -> None:
    doc = (
        "<xml><ToUserName><![CDATA[gh_1]]></ToUserName><FromUserName><![CDATA[o1]]>"
        "</FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        "<Content><![CDATA[ 这个月 </Content> 还差多少 ]]></Content><MsgId>123</MsgId></xml>"
    )
    assert _flat_fields(doc) == _parse_text(doc)
    message = parse_message(doc.encode())
    assert message.content == " 这个月 </Content> 还差多少 " and message.msg_id == "123"


# ---- the inline driver ------------------------------------------------------------------


async def _drive(coro: Any, budget: float = 5.0) -> tuple[bool, Any, asyncio.Task[Any] | None]:
    run = _Inline(coro, budget)
    done = await run
    return done, run.result, run.task


async def test_a_coroutine_that_never_waits_finishes_without_a_task() -> None:
    async def quick() -> str:
        return "ok"

    before = len(asyncio.all_tasks())
    assert await _drive(quick()) == (True, "ok", None)
    assert len(asyncio.all_tasks()) == before


async def test_a_coroutine_that_waits_finishes_in_the_same_task() -> None:
    me = asyncio.current_task()
    seen: list[Any] = []
    loop = asyncio.get_running_loop()

    async def waits() -> int:
        fut = loop.create_future()
        loop.call_later(0.01, fut.set_result, 41)
        value = await fut
        await asyncio.sleep(0)  # a bare yield
        await asyncio.sleep(0.01)
        seen.append(asyncio.current_task())
        return value + 1

    assert await _drive(waits()) == (True, 42, None)
    assert seen == [me]


async def test_an_exception_comes_out_as_from_a_task() -> None:
    async def fails() -> None:
        await asyncio.sleep(0.001)
        raise KeyError("boom")

    with pytest.raises(KeyError):
        await _drive(fails())


async def test_past_the_budget_the_coroutine_goes_on_in_a_task_of_its_own() -> None:
    steps: list[str] = []

    async def slow() -> str:
        steps.append("start")
        await asyncio.sleep(0.15)
        steps.append("after sleep")
        await asyncio.sleep(0.01)
        return "late answer"

    done, result, task = await _drive(slow(), budget=0.05)
    assert not done and result is None and task is not None
    assert steps == ["start"]
    assert await asyncio.wait_for(task, 2) == "late answer"
    assert steps == ["start", "after sleep"]


async def test_cancelling_the_awaiting_task_cancels_what_the_coroutine_waits_for() -> None:
    loop = asyncio.get_running_loop()
    inner = loop.create_future()
    outcome: list[str] = []

    async def waits() -> None:
        try:
            await inner
        except asyncio.CancelledError:
            outcome.append("cancelled inside")
            raise

    outer = asyncio.ensure_future(_drive(waits()))
    await asyncio.sleep(0.01)
    outer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await outer
    assert inner.cancelled() and outcome == ["cancelled inside"]


async def test_a_timeout_inside_the_coroutine_still_times_it_out() -> None:
    async def bounded() -> str:
        try:
            async with asyncio.timeout(0.02):
                await asyncio.sleep(5)
        except TimeoutError:
            return "timed out"
        return "not timed out"

    assert await _drive(bounded()) == (True, "timed out", None)


async def test_sqlalchemy_awaits_run_inline_and_after_a_hand_over(tmp_path: Path) -> None:
    engine = create_async_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}")
    slow_query = text(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 300000) "
        "SELECT count(*) FROM n"
    )

    async def queries() -> list[int]:
        async with engine.connect() as conn:
            first = (await conn.execute(text("SELECT 1"))).scalar_one()
            counted = (await conn.execute(slow_query)).scalar_one()
            last = (await conn.execute(text("SELECT 2"))).scalar_one()
        return [first, counted, last]

    try:
        assert await _drive(queries()) == (True, [1, 300000, 2], None)
        done, _, task = await _drive(queries(), budget=0.001)  # hands over mid-query
        assert not done and task is not None
        assert await asyncio.wait_for(task, 10) == [1, 300000, 2]
    finally:
        await engine.dispose()


# ---- the dispatcher's screens -----------------------------------------------------------

CORPUS = Path(__file__).resolve().parent / "data" / "liaison_utterances.csv"
EXTRA = ["帮助", "更多", "下一页", "1", "2", "绑定 483920", "解绑", "我是谁", "", "附近哪里能献血",
         "献了600毫升能免费用多少血", "绑定献血者", "13月还差多少", "你好", "{{7*7}}"]  # fmt: skip


class _Anything(dict[str, Any]):
    """Dispatcher data in which every name a handler asks for is present."""

    def __contains__(self, key: object) -> bool:
        return True

    def __missing__(self, key: str) -> Any:
        return None


def _messages() -> list[Any]:
    from bot.simulator import event_xml, message_xml, text_xml

    with CORPUS.open(encoding="utf-8") as fh:
        texts = [row["text"] for row in csv.DictReader(fh)]
    out = [parse_message(text_xml("o1", t)) for t in [*texts, *EXTRA]]
    out.append(parse_message(message_xml("o1", "voice", Recognition="这个月还差多少")))
    out.append(parse_message(message_xml("o1", "image", PicUrl="http://x")))
    out += [parse_message(event_xml("o1", "CLICK", EventKey=k)) for k in [*MENU_KEYS, "NOPE"]]
    out += [parse_message(event_xml("o1", e)) for e in ("subscribe", "unsubscribe", "VIEW")]
    return out


async def _one_by_one(handlers: list[Handler], message: Any, data: dict[str, Any]) -> Any:
    for handler in handlers:
        if handler.matches_type(message) and await handler.check(message, data) is not None:
            return await handler.callback()
    return None


@pytest.mark.parametrize("role", ["anonymous", "donor", "liaison", "office"])
async def test_screens_pick_the_handler_the_filters_pick(role: str) -> None:
    dispatcher = build_dispatcher()
    picked: list[str] = []

    def stub(name: str) -> Any:
        async def called(**kwargs: Any) -> str:
            picked.append(name)
            return name

        return called

    reference = list(dispatcher.handlers)
    originals = [h.callback for h in reference]  # the routers are shared: put them back
    try:
        for h in reference:
            h.callback = stub(h.callback.__qualname__)  # parameters were read at registration
        user = User("o1", "zhangjiajie", role, unit_id=1 if role in ("liaison", "office") else None)
        for message in _messages():
            base = {"user": user, "today": date(2026, 3, 15), "jurisdiction": "zhangjiajie",
                    "settings": SimpleNamespace(jurisdictions={"zhangjiajie": SimpleNamespace(
                        policy="hunan-2015")})}  # fmt: skip
            expected = await _one_by_one(reference, message, _Anything(base))
            got = await dispatcher._route(message, _Anything(base))
            assert got == expected, (message.msg_type, message.content, message.event_key)
    finally:
        for h, callback in zip(reference, originals, strict=True):
            h.callback = callback
    assert len(set(picked)) > 5  # the stubs did run, for many different handlers


# ---- the memory lock --------------------------------------------------------------------


async def test_memory_lock_times_out_whoever_waits_and_passes_on_in_order() -> None:
    storage = MemoryStorage()
    order: list[str] = []
    async with storage.lock("k", timeout=1):
        with pytest.raises(TimeoutError):
            async with storage.lock("k", timeout=0.02):
                pass

        async def take(name: str) -> None:
            async with storage.lock("k", timeout=2):
                order.append(name)

        waiting = [asyncio.ensure_future(take(n)) for n in ("a", "b", "c")]
        await asyncio.sleep(0.01)
        waiting[1].cancel()  # a waiter that gives up leaves the others their turn
        await asyncio.sleep(0.01)
    await asyncio.gather(*waiting, return_exceptions=True)
    assert order == ["a", "c"]
    assert not storage._locks  # nothing left behind


# ---- ciphers made once per key --------------------------------------------------------


def test_long_lived_ciphers_agree_with_wechatpy_message_after_message() -> None:
    """Each key's CBC contexts run on from message to message; every message still opens
    with wechatpy's fresh cipher, and wechatpy's messages open with ours, in any order and
    under either key of a rotation."""
    from wechatpy.crypto import WeChatCrypto

    from bot.wechat.crypto import MessageCrypto

    new_key, old_key = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", "0" * 43
    appid, token = "wx2c2769f8efd9abc2", "spamtest"
    ours = MessageCrypto(token, new_key, appid, previous_key=old_key)
    theirs = {k: WeChatCrypto(token, k, appid) for k in (new_key, old_key)}
    for n in range(60):
        xml = f"<xml><Content><![CDATA[{'帮助' * n}{n}]]></Content></xml>".encode()
        # ours → wechatpy (replies always use the current key)
        envelope = ours.wrap(xml, "1409735669", f"nonce{n}").decode()
        signature = parse_xml(envelope.encode())["MsgSignature"]
        opened = theirs[new_key].decrypt_message(envelope, signature, "1409735669", f"nonce{n}")
        assert opened == xml.decode()
        # wechatpy → ours, alternating keys as during a rotation
        key = old_key if n % 3 == 0 else new_key
        sent = theirs[key].encrypt_message(xml.decode(), f"nonce{n}", "1409735669")
        assert ours.decrypt(parse_xml(sent.encode())["Encrypt"]) == xml


async def test_closing_the_awaiting_coroutine_closes_the_dispatch() -> None:
    closed: list[str] = []
    loop = asyncio.get_running_loop()

    async def waits() -> None:
        try:
            await loop.create_future()
        finally:
            closed.append("dispatch closed")

    outer = _drive(waits()).__await__()
    outer.send(None)  # runs until the dispatch waits
    outer.close()
    assert closed == ["dispatch closed"]
