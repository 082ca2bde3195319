"""The reply-template pages of the console: edit in the browser, see the chat reply change."""

from __future__ import annotations

import html
import re
from typing import Any

import pytest
from sqlalchemy import func, select

from bot.app import SESSIONS
from models.console import ReplyTemplateVersion
from models.people import AuditEntry
from tests.console_world import add_users, login

PAGE = "/console/j/zhangjiajie/templates"
HELP = PAGE + "/help"


@pytest.fixture
async def bot(make_bot: Any) -> Any:
    made = await make_bot()
    await add_users(made)
    return made


async def counts(bot: Any) -> tuple[int, int]:
    """(saved versions, template audit entries)"""
    async with bot.app[SESSIONS]() as s:
        versions = await s.scalar(select(func.count()).select_from(ReplyTemplateVersion))
        audits = await s.scalar(select(func.count()).where(AuditEntry.action.like("template.%")))
    return int(versions or 0), int(audits or 0)


def textarea_of(page: str) -> str:
    found = re.search(r'<textarea name="source"[^>]*>(.*?)</textarea>', page, re.S)
    assert found, page
    text = html.unescape(found.group(1))
    return text[1:] if text.startswith("\n") else text  # as a browser reads it


def error_of(page: str) -> str:
    found = re.search(r'<p class="error" id="error" role="alert">(.*?)</p>', page, re.S)
    assert found, page
    return html.unescape(found.group(1))


async def test_edit_in_the_console_and_the_chat_reply_changes_then_roll_back(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    status, page = await staff.get(PAGE)
    assert status == 200 and 'href="/console/j/zhangjiajie/templates/help"' in page
    assert "quota_month" in page and "_quota" not in page  # partials are not listed
    status, page = await staff.get(HELP)
    assert status == 200 and "还没有这个模板的真实数据" in page and "发送「帮助」" in page

    shipped = await bot.say("zhangjiajie", "帮助", openid="o_c")
    assert shipped is not None and "我是张家界市献血办的小助手" in shipped
    status, page = await staff.get(HELP)
    assert "按本辖区最近一次真实回复的数据渲染" in page

    draft = (
        "{{ jurisdiction_name }}献血小助手为您服务。\n"
        "{% for i in items %}· {{ i.example }}\n{% endfor %}"
    )
    status, page = await staff.post(HELP, {"source": draft, "action": "preview"})
    assert status == 200 and "张家界市献血小助手为您服务。\n· " in html.unescape(page)
    assert await counts(bot) == (0, 0)  # a preview saves nothing

    status, _ = await staff.post(HELP, {"source": draft, "note": "更简短", "action": "save"})
    assert status == 302
    status, page = await staff.get(HELP + "?saved=1")
    assert "已保存为第 1 版" in page and "更简短" in page and "zjj_office" in page
    reply = await bot.say("zhangjiajie", "帮助", openid="o_c")
    assert reply is not None and reply.startswith("张家界市献血小助手为您服务。")
    rugao = await bot.say("rugao", "帮助", openid="o_c")
    assert rugao is not None and "我是如皋市献血办的小助手" in rugao
    _, listing = await staff.get(PAGE)
    assert "已修改" in listing

    status, _ = await staff.post(HELP + "/rollback", {"version": "0"})
    assert status == 302
    assert await bot.say("zhangjiajie", "帮助", openid="o_c") == shipped
    assert await counts(bot) == (3, 2)  # shipped v0, the edit, the rollback; two audited
    _, audit_page = await staff.get("/console/j/zhangjiajie/audit")
    assert "template.save" in audit_page and "template.rollback" in audit_page


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("{% include '/etc/passwd' %}", "第 1 行：不能引用「/etc/passwd」"),
        ("你好\n{{ no_such_var }}", "第 2 行：没有叫「no_such_var」的值"),
        ("一\n二\n{% for x in items %}", "第 3 行有语法错误"),
    ],
)
async def test_a_bad_template_is_refused_with_a_clear_message_and_nothing_changes(
    bot: Any, source: str, words: str
) -> None:
    await bot.say("zhangjiajie", "帮助", openid="o_d")  # real data known: the full check
    staff = await login(bot.client, "zjj_office")
    status, page = await staff.post(HELP, {"source": source, "note": "x", "action": "save"})
    assert status == 400 and words in error_of(page)
    assert textarea_of(page) == source  # the draft is kept for fixing
    assert await counts(bot) == (0, 0)
    reply = await bot.say("zhangjiajie", "帮助", openid="o_d")
    assert reply is not None and "我是张家界市献血办的小助手" in reply


async def test_html_in_a_template_is_shown_as_text(bot: Any) -> None:
    await bot.say("zhangjiajie", "帮助", openid="o_e")
    staff = await login(bot.client, "zjj_office")
    source = "<script>alert(1)</script>{{ jurisdiction_name }}</textarea><b>x</b>"
    status, _ = await staff.post(HELP, {"source": source, "action": "save"})
    assert status == 302
    _, page = await staff.get(HELP)
    assert "<script>alert(1)</script>" not in page and "</textarea><b>" not in page
    assert textarea_of(page) == source
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    _, preview = await staff.post(HELP, {"source": source, "action": "preview"})
    assert "<script>alert(1)</script>" not in preview and "<b>x</b>" not in preview
    # in the chat it is plain text, as written
    assert await bot.say("zhangjiajie", "帮助", openid="o_e") == (
        "<script>alert(1)</script>张家界市</textarea><b>x</b>"
    )


async def test_the_live_preview_answers_json_with_the_csrf_header(bot: Any) -> None:
    await bot.say("zhangjiajie", "帮助", openid="o_f")
    staff = await login(bot.client, "zjj_office")
    url = HELP + "/preview"
    ok = await bot.client.post(
        url, json={"source": "{{ jurisdiction_name }}好"}, headers={"X-CSRF-Token": staff.csrf}
    )
    assert ok.status == 200 and await ok.json() == {"ok": True, "text": "张家界市好", "known": True}
    bad = await bot.client.post(
        url, json={"source": "一\n{{ nope }}"}, headers={"X-CSRF-Token": staff.csrf}
    )
    answer = await bad.json()
    assert answer["ok"] is False and answer["line"] == 2 and "nope" in answer["error"]
    no_token = await bot.client.post(url, json={"source": "x"})
    assert no_token.status == 403


async def test_missing_csrf_is_refused_and_saves_nothing(bot: Any) -> None:
    await login(bot.client, "zjj_office")
    resp = await bot.client.post(
        HELP, data={"source": "改了", "action": "save"}, allow_redirects=False
    )
    assert resp.status == 403 and "安全令牌" in await resp.text()
    resp = await bot.client.post(HELP + "/rollback", data={"version": "0"}, allow_redirects=False)
    assert resp.status == 403
    assert await counts(bot) == (0, 0)


async def test_an_office_user_of_another_jurisdiction_is_refused(bot: Any) -> None:
    staff = await login(bot.client, "rugao_office")
    for path in (PAGE, HELP):
        status, page = await staff.get(path)
        assert status == 403 and "本辖区" in page
    status, _ = await staff.post(HELP, {"source": "改了", "action": "save"})
    assert status == 403
    status, _ = await staff.post(HELP + "/rollback", {"version": "0"})
    assert status == 403
    assert await counts(bot) == (0, 0)
    assert (await staff.get("/console/j/rugao/templates/help"))[0] == 200


async def test_unknown_templates_and_versions(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    assert (await staff.get(PAGE + "/no_such_template"))[0] == 404
    assert (await staff.get(PAGE + "/_quota"))[0] == 404  # a partial is not edited alone
    status, page = await staff.post(HELP + "/rollback", {"version": "7"})
    assert status == 400 and "没有第 7 版" in error_of(page)
    assert (await staff.post(HELP + "/rollback", {"version": "x"}))[0] == 400
    assert await counts(bot) == (0, 0)
