"""Reply templates edited per jurisdiction: the checks, and the chat through the real webhook.

The console side (pages, CSRF, scope, escaping) is in tests/test_console_templates.py.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import RENDER, SESSIONS, STORAGE
from bot.render import LocalRenderer, make_environment
from bot.reply_templates import (
    VERSION_KEY,
    ReplyTemplates,
    TemplateRefused,
    for_renderer,
    shipped,
    validate,
)
from bot.simulator import event_xml
from models.console import ReplyTemplateVersion
from models.people import AuditEntry

ENV = make_environment()
HELP_CONTEXT = {
    "greeting": "",
    "role": "anonymous",
    "items": [],
    "jurisdiction_name": "张家界市",
}


def layer_of(bot: Any) -> ReplyTemplates:
    return for_renderer(bot.app[RENDER], bot.app[STORAGE], bot.app[SESSIONS])


async def version_rows(bot: Any) -> int:
    async with bot.app[SESSIONS]() as s:
        return int(await s.scalar(select(func.count()).select_from(ReplyTemplateVersion)) or 0)


# ---- the gate ----------------------------------------------------------------------------


def test_every_shipped_template_passes_the_checks_unchanged() -> None:
    """Including those importing replies/_quota.j2 or including donor_contact.j2."""
    ship = shipped(ENV)
    assert "help" in ship.sources and "quota_month" in ship.sources
    assert "replies/_quota.j2" in ship.partials and "_quota" not in ship.sources
    for name, text in ship.sources.items():
        assert validate(ENV, name, text, None) == ""


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{% include '/etc/passwd' %}", "不能引用「/etc/passwd」"),
        ("{% import '/etc/passwd' as p %}", "不能引用「/etc/passwd」"),
        ("{% from 'replies/help.j2' import x %}", "不能引用「replies/help.j2」"),
        ("{% extends 'replies/_quota.j2' %}", "不能引用「replies/_quota.j2」"),
        ("{% include jurisdiction_name %}", "不能引用一个算出来的名字"),
        ("{% include ['a', '/etc/passwd'] %}", "不能引用一个算出来的名字"),
    ],
)
def test_reading_files_is_refused(source: str, words: str) -> None:
    with pytest.raises(TemplateRefused) as refused:
        validate(ENV, "help", "好\n" + source, HELP_CONTEXT)
    assert words in str(refused.value) and "第 2 行" in str(refused.value)
    assert refused.value.line == 2


def test_an_unknown_value_is_refused_with_or_without_real_data() -> None:
    for context in (None, HELP_CONTEXT):
        with pytest.raises(TemplateRefused) as refused:
            validate(ENV, "help", "您好\n{{ jurisdiction_name }}{{ no_such_var }}", context)
        message = str(refused.value)
        assert "第 2 行" in message and "「no_such_var」" in message
        assert "jurisdiction_name" in message  # and what may be used instead


def test_a_syntax_error_is_refused_with_its_line() -> None:
    with pytest.raises(TemplateRefused) as refused:
        validate(ENV, "help", "一\n二\n{% for item in items %}{{ item }}", HELP_CONTEXT)
    assert "第 3 行" in str(refused.value) and "语法错误" in str(refused.value)
    with pytest.raises(TemplateRefused, match="第 1 行"):
        validate(ENV, "help", "{{ role | no_such_filter }}", HELP_CONTEXT)


def test_rendering_against_real_data_catches_what_reading_cannot() -> None:
    with pytest.raises(TemplateRefused) as refused:
        validate(ENV, "help", "一\n{{ role.no_such_attribute }}", HELP_CONTEXT)
    assert "第 2 行" in str(refused.value) and "no_such_attribute" in str(refused.value)
    with pytest.raises(TemplateRefused, match="不允许的操作"):  # the sandbox
        validate(ENV, "help", "{{ role.__class__.__mro__ }}", HELP_CONTEXT)
    with pytest.raises(TemplateRefused, match="空"):
        validate(ENV, "help", "{% if false %}x{% endif %}", HELP_CONTEXT)
    with pytest.raises(TemplateRefused, match="没有名为"):
        validate(ENV, "../../etc/passwd", "x", None)


def test_the_preview_uses_the_shipped_filters() -> None:
    text = validate(ENV, "help", "{{ 12.50 | num }} {{ 40 | bar }} {{ role }}", HELP_CONTEXT)
    assert text == "12.5 ▓▓▓▓░░░░░░ anonymous"


# ---- through the real webhook ------------------------------------------------------------


@pytest.fixture
async def bot(make_bot: Any) -> Any:
    return await make_bot()


async def test_an_edit_changes_the_chat_of_one_jurisdiction_only_and_rollback_restores_it(
    bot: Any,
) -> None:
    layer = layer_of(bot)
    before = await bot.say("zhangjiajie", "帮助", openid="o_a")
    assert before is not None and "我是张家界市献血办的小助手" in before
    assert layer.context("zhangjiajie", "help") is not None  # a real render was remembered

    edited = (
        "【张家界】{{ jurisdiction_name }}小助手：{% for i in items %}{{ i.example }}；{% endfor %}"
    )
    version = await layer.save("zhangjiajie", "help", edited, actor="console:t", note="短")
    assert version == 1
    after = await bot.say("zhangjiajie", "帮助", openid="o_a")  # the memoised help is gone too
    assert (
        after is not None and after.startswith("【张家界】张家界市小助手：") and "帮助；" in after
    )
    other = await bot.say("rugao", "帮助", openid="o_a")
    assert other is not None and "我是如皋市献血办的小助手" in other

    again = await layer.rollback("zhangjiajie", "help", 0, actor="console:t")
    assert again == 2
    assert await bot.say("zhangjiajie", "帮助", openid="o_a") == before
    async with bot.app[SESSIONS]() as s:
        rows = list(await s.scalars(select(ReplyTemplateVersion).order_by("version")))
        entries = list(await s.scalars(select(AuditEntry).order_by(AuditEntry.id)))
    assert [(r.version, r.author) for r in rows] == [
        (0, "donorbot"),
        (1, "console:t"),
        (2, "console:t"),
    ]
    assert rows[2].note == "回滚到第 0 版"
    assert [(e.actor, e.action, e.jurisdiction, e.detail["version"]) for e in entries] == [
        ("console:t", "template.save", "zhangjiajie", 1),
        ("console:t", "template.rollback", "zhangjiajie", 2),
    ]


async def test_the_welcome_of_one_office_is_its_own(bot: Any) -> None:
    layer = layer_of(bot)
    await layer.save(
        "zhangjiajie", "welcome", "欢迎来到{{ jurisdiction_name }}！", actor="console:t", note=""
    )

    async def welcome(code: str, openid: str) -> str:
        now = int(bot.clock.timestamp())
        _, reply, _ = await bot.post(code, event_xml(openid, "subscribe", create_time=now))
        assert reply is not None
        return str(reply["Content"])

    assert await welcome("zhangjiajie", "o_new") == "欢迎来到张家界市！"
    assert (await welcome("rugao", "o_new")).startswith("感谢关注如皋市无偿献血")


async def test_a_refused_edit_changes_nothing(bot: Any) -> None:
    layer = layer_of(bot)
    for bad in ("{% include '/etc/passwd' %}", "{{ no_such_var }}", "{% if %}"):
        with pytest.raises(TemplateRefused):
            await layer.save("zhangjiajie", "help", bad, actor="console:t", note="")
    assert await version_rows(bot) == 0
    assert await bot.app[STORAGE].get(VERSION_KEY) is None  # no process was told anything
    reply = await bot.say("zhangjiajie", "帮助")
    assert reply is not None and "小助手" in reply


async def test_an_edit_that_fails_on_a_case_no_check_saw_falls_back_to_the_shipped_reply(
    bot: Any,
) -> None:
    """No real help reply seen yet: only the static checks run, and this one passes them."""
    layer = layer_of(bot)
    await layer.save("zhangjiajie", "help", "{{ role.missing }}", actor="console:t", note="")
    reply = await bot.say("zhangjiajie", "帮助")
    assert reply is not None and "我是张家界市献血办的小助手" in reply  # not 「系统繁忙」


async def test_a_second_process_picks_up_an_edit_from_the_stamp_in_redis(
    make_bot: Any, redis_storage: Any, sqlite_url: str
) -> None:
    """Two `serve` processes, one database, one Redis: the edit reaches the other soon,
    and until then the other does not ask Redis about templates on every message."""
    from bot.storage import RedisStorage

    bot1 = await make_bot(storage=redis_storage)
    other = RedisStorage(redis_storage.redis, redis_storage.prefix)
    bot2 = await make_bot(storage=other, database_url=sqlite_url)
    shipped_reply = await bot2.say("rugao", "帮助", openid="o_b")  # bot2 has looked once
    assert shipped_reply is not None and "如皋市" in shipped_reply

    looks = 0
    real_get = other.get

    async def counting_get(key: str) -> str | None:
        nonlocal looks
        looks += key == VERSION_KEY
        return await real_get(key)

    other.get = counting_get  # type: ignore[method-assign]
    await layer_of(bot1).save("rugao", "help", "如皋新版帮助", actor="console:t", note="")
    assert await bot1.say("rugao", "帮助", openid="o_b") == "如皋新版帮助"  # at once, here
    for _ in range(5):  # within the interval: the other serves what it has, no Redis look
        assert await bot2.say("rugao", "帮助", openid="o_b") == shipped_reply
    assert looks == 0
    await asyncio.sleep(layer_of(bot2).every + 0.1)
    assert await bot2.say("rugao", "帮助", openid="o_b") == "如皋新版帮助"
    assert looks == 1
    await layer_of(bot1).rollback("rugao", "help", 0, actor="console:t")
    await asyncio.sleep(layer_of(bot2).every + 0.1)
    assert await bot2.say("rugao", "帮助", openid="o_b") == shipped_reply


async def test_handlers_get_one_cached_renderer_per_jurisdiction(bot: Any) -> None:
    layer = layer_of(bot)
    zjj = layer.local("zhangjiajie")
    assert isinstance(zjj, LocalRenderer) and zjj is layer.local("zhangjiajie")
    assert zjj is not layer.local("rugao") and zjj.shared is bot.app[RENDER]


@pytest.fixture
async def seeded(make_bot: Any, tmp_path: Any) -> Any:
    """张家界's 2018 plan and the liaison-chat donations (tests/test_liaison_chat.py)."""
    from datetime import UTC, datetime

    from bot.imports import import_donation_file, import_plan_file
    from tests import test_liaison_chat as chat

    made = await make_bot()
    sessions = made.app[SESSIONS]
    await import_plan_file(sessions, made.settings, chat.SEEDS / "zhangjiajie-2018.csv", actor="t")
    made.clock.set(datetime(2022, 1, 1, tzinfo=UTC))
    rows = [r for r in chat.ROWS if r.jurisdiction == "zhangjiajie"]
    await import_donation_file(
        sessions, made.settings, chat._write(tmp_path / "d.csv", rows), clock=made.clock
    )
    return made


async def test_a_quota_reply_is_previewed_against_the_numbers_a_liaison_was_sent(
    seeded: Any,
) -> None:
    from datetime import date

    from tests.test_liaison_chat import at, bind

    bot = seeded
    layer = layer_of(bot)
    at(bot, date(2018, 3, 25))
    await bind(bot, "zhangjiajie", "慈利县", "o_cili")
    assert layer.context("zhangjiajie", "quota_month") is None  # nothing asked yet
    real = await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili")
    assert real is not None and "任务 600人，已完成 250人" in real
    shipped_text = shipped(layer.env).sources["quota_month"]
    draft = "【慈利县专用】\n" + shipped_text
    preview = layer.preview("zhangjiajie", "quota_month", draft)
    assert preview == "【慈利县专用】\n" + real  # the real data, the shipped partial imported
    with pytest.raises(TemplateRefused, match="no_such"):
        layer.preview("zhangjiajie", "quota_month", "{{ m.unit.no_such }}")
    await layer.save("zhangjiajie", "quota_month", draft, actor="console:t", note="")
    assert await bot.say("zhangjiajie", "这个月还差多少", openid="o_cili") == preview
