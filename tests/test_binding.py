"""Binding through the webhook: codes that work once, expire, lock after five failures."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.app import SESSIONS
from bot.binding import create_invite
from bot.imports import import_plan_file
from bot.simulator import event_xml
from models.people import AuditEntry
from models.units import resolve_unit
from models.users import Binding

SEEDS = Path(__file__).resolve().parents[1] / "data" / "seed_plans"


@pytest.fixture
async def bot(make_bot: Any) -> Any:
    bot = await make_bot()
    for name in ("zhangjiajie-2018", "rugao-2020"):
        await import_plan_file(bot.app[SESSIONS], bot.settings, SEEDS / f"{name}.csv")
    bot.clock.set(datetime(2018, 3, 20, 4, tzinfo=UTC))
    return bot


async def invite(bot: Any, code: str, unit: str | None, *, role: str = "liaison",
                 ttl: timedelta = timedelta(days=7)) -> str:  # fmt: skip
    async with bot.app[SESSIONS]() as s:
        ref = (await resolve_unit(s, code, unit)).unit if unit else None
        new = await create_invite(
            s, bot.settings, jurisdiction=code, role=role, unit=ref, ttl=ttl,
            actor="office-staff", now=bot.clock.now(),
        )  # fmt: skip
        await s.commit()
    return new.code


async def test_full_width_code_binds_and_names_the_units_plan(bot: Any) -> None:
    code = await invite(bot, "zhangjiajie", "慈利县")
    wide = "".join(chr(ord(c) + 0xFEE0) for c in code)  # １２３４５６
    reply = await bot.say("zhangjiajie", f"绑定{wide}", openid="o1")
    assert reply is not None and "绑定成功" in reply and "慈利县" in reply
    assert "2018年本单位计划" in reply and "600人" in reply
    assert "慈利县" in (await bot.say("zhangjiajie", "我是谁", openid="o1") or "")
    async with bot.app[SESSIONS]() as s:
        actions = (await s.scalars(select(AuditEntry.action))).all()
    assert "invite.create" in actions and "bind" in actions


async def test_a_code_works_once(bot: Any) -> None:
    code = await invite(bot, "zhangjiajie", "慈利县")
    assert "绑定成功" in (await bot.say("zhangjiajie", f"绑定 {code}", openid="o1") or "")
    reply = await bot.say("zhangjiajie", f"绑定 {code}", openid="o2")
    assert reply is not None and "已经被使用" in reply


async def test_an_expired_code_is_refused(bot: Any) -> None:
    code = await invite(bot, "zhangjiajie", "慈利县", ttl=timedelta(hours=1))
    bot.clock.advance(3601)
    reply = await bot.say("zhangjiajie", f"绑定 {code}", openid="o1")
    assert reply is not None and "已过期" in reply


async def test_a_code_of_another_jurisdiction_does_not_match(bot: Any) -> None:
    code = await invite(bot, "rugao", "审计局")
    reply = await bot.say("zhangjiajie", f"绑定 {code}", openid="o1")
    assert reply is not None and "邀请码无效" in reply


async def test_five_wrong_codes_lock_for_an_hour(bot: Any) -> None:
    good = await invite(bot, "zhangjiajie", "慈利县")
    wrong = f"{(int(good) + 1) % 10**6:06d}"
    replies = [await bot.say("zhangjiajie", f"绑定 {wrong}", openid="o_guess") for _ in range(5)]
    assert "还可尝试4次" in (replies[0] or "")
    assert "暂停绑定1小时" in (replies[4] or "")
    # even the right code is refused while locked
    reply = await bot.say("zhangjiajie", f"绑定 {good}", openid="o_guess")
    assert reply is not None and "暂停绑定1小时" in reply
    # another user is not affected
    assert "绑定成功" in (await bot.say("zhangjiajie", f"绑定 {good}", openid="o_other") or "")


async def test_unbind_and_unsubscribe_remove_the_binding(bot: Any) -> None:
    code = await invite(bot, "zhangjiajie", "慈利县")
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o1")
    assert "已解除绑定" in (await bot.say("zhangjiajie", "解绑", openid="o1") or "")
    reply = await bot.say("zhangjiajie", "这个月还差多少", openid="o1")
    assert reply is not None and "绑定" in reply and "600" not in reply

    code = await invite(bot, "zhangjiajie", "慈利县")
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o1")
    await bot.post("zhangjiajie", event_xml("o1", "unsubscribe"))
    async with bot.app[SESSIONS]() as s:
        assert (await s.scalars(select(Binding))).all() == []


async def test_office_invite_binds_staff_who_see_the_whole_jurisdiction(bot: Any) -> None:
    code = await invite(bot, "zhangjiajie", None, role="office")
    reply = await bot.say("zhangjiajie", f"绑定 {code}", openid="o_staff")
    assert reply is not None and "工作人员" in reply
    reply = await bot.say("zhangjiajie", "本月全市进度", openid="o_staff")
    assert reply is not None and "张家界市2018年3月献血进度" in reply


async def test_menu_click_asks_the_same_question_as_typing(bot: Any) -> None:
    code = await invite(bot, "zhangjiajie", "慈利县")
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o1")
    typed = await bot.say("zhangjiajie", "这个月还差多少", openid="o1")
    bot.clock.advance(1)
    _, reply, _ = await bot.post(
        "zhangjiajie", event_xml("o1", "CLICK", EventKey="QUOTA_REMAINING")
    )
    assert reply is not None and reply["Content"] == typed


@pytest.mark.parametrize(
    "text",
    ["", "   ", "😀😀😀", "x" * 5000, "'; DROP TABLE units;--", "{{7*7}}", "13月还差多少",
     "上上上个月完成了吗"],
)  # fmt: skip
async def test_odd_messages_get_a_polite_reply_and_leak_nothing(bot: Any, text: str) -> None:
    code = await invite(bot, "zhangjiajie", "慈利县")
    await bot.say("zhangjiajie", f"绑定 {code}", openid="o1")
    reply = await bot.say("zhangjiajie", text, openid="o1")
    assert reply is not None and reply.strip()
    assert "49" not in reply  # {{7*7}} is never evaluated
    assert "Traceback" not in reply and "units" not in reply


def test_invite_and_menu_push_from_the_command_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.cli import main

    monkeypatch.setenv("DONORBOT_CONFIG", str(tmp_path / "donorbot.toml"))
    monkeypatch.setenv("DONORBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/x.db")
    runner = CliRunner()
    assert runner.invoke(main, ["demo", "config"]).exit_code == 0
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    plan = str(SEEDS / "zhangjiajie-2018.csv")
    assert runner.invoke(main, ["plan", "import", plan]).exit_code == 0
    result = runner.invoke(main, ["invite", "-j", "zhangjiajie", "-u", "慈利县"])
    assert result.exit_code == 0 and "邀请码（只显示这一次）" in result.output
    result = runner.invoke(main, ["invite", "-j", "zhangjiajie", "-u", "不存在的单位"])
    assert result.exit_code == 2 and "找不到单位" in result.output
    result = runner.invoke(main, ["invite", "-j", "zhangjiajie"])
    assert result.exit_code == 2 and "--unit" in result.output
    result = runner.invoke(main, ["invite", "-j", "zhangjiajie", "-u", "慈利县", "--ttl", "7x"])
    assert result.exit_code == 2 and "7d" in result.output
