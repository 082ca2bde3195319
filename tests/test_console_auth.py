"""Console accounts: login, sessions, CSRF, throttling, and one jurisdiction per office user."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from bot.app import SESSIONS
from bot.cli import main
from models.audit import audit
from models.console import ConsoleUser
from tests.console_world import PASSWORD, add_users, csrf_of, login


@pytest.fixture
async def bot(make_bot: Any) -> Any:
    made = await make_bot()
    await add_users(made)
    return made


async def test_a_wrong_password_is_refused_and_a_right_one_lets_the_user_in(bot: Any) -> None:
    token = await csrf_of(bot.client)
    resp = await bot.client.post(
        "/console/login",
        data={"_csrf": token, "username": "zjj_office", "password": "wrong password!"},
        allow_redirects=False,
    )
    assert resp.status == 401 and "用户名或密码不正确" in await resp.text()
    unknown = await bot.client.post(
        "/console/login",
        data={"_csrf": token, "username": "nobody", "password": PASSWORD},
        allow_redirects=False,
    )
    assert unknown.status == 401 and "用户名或密码不正确" in await unknown.text()  # same words
    staff = await login(bot.client, "zjj_office")
    status, _ = await staff.get("/console/")
    assert status == 302
    status, html = await staff.get("/console/j/zhangjiajie/audit")
    assert status == 200 and "zjj_office" in html and "console.login" in html


async def test_the_session_cookie_is_httponly_and_strict(bot: Any) -> None:
    token = await csrf_of(bot.client)
    resp = await bot.client.post(
        "/console/login",
        data={"_csrf": token, "username": "admin", "password": PASSWORD},
        allow_redirects=False,
    )
    cookie = resp.headers.getall("Set-Cookie")[-1]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/console/" in cookie


async def test_a_secure_cookie_when_served_over_https(make_bot: Any) -> None:
    bot = await make_bot(console_https=True)
    resp = await bot.client.get("/console/login")
    assert "Secure" in resp.headers.getall("Set-Cookie")[-1]


async def test_missing_or_forged_csrf_tokens_change_nothing(bot: Any) -> None:
    staff = await login(bot.client, "zjj_office")
    no_token = await bot.client.post("/console/logout", data={}, allow_redirects=False)
    assert no_token.status == 403 and "安全令牌" in await no_token.text()
    forged = await bot.client.post(
        "/console/logout", data={"_csrf": "x" * 43}, allow_redirects=False
    )
    assert forged.status == 403
    status, _ = await staff.get("/console/j/zhangjiajie/audit")
    assert status == 200  # still logged in: the forged logouts did nothing
    status, _ = await staff.post("/console/logout")
    assert status == 302
    status, _ = await staff.get("/console/j/zhangjiajie/audit")
    assert status == 302  # now logged out


async def test_an_office_user_cannot_open_another_jurisdiction_by_url(bot: Any) -> None:
    staff = await login(bot.client, "rugao_office")
    status, html = await staff.get("/console/j/zhangjiajie/audit")
    assert status == 403 and "本辖区" in html
    assert (await staff.post("/console/logout"))[0] == 302
    admin = await login(bot.client, "admin")
    assert (await admin.get("/console/j/zhangjiajie/audit"))[0] == 200
    assert (await admin.get("/console/j/rugao/audit"))[0] == 200
    assert (await admin.get("/console/j/atlantis/audit"))[0] == 404


async def test_five_failed_logins_slow_the_next_attempts(bot: Any) -> None:
    token = await csrf_of(bot.client)
    for _ in range(5):
        resp = await bot.client.post(
            "/console/login",
            data={"_csrf": token, "username": "zjj_office", "password": "guess guess"},
            allow_redirects=False,
        )
        assert resp.status == 401
    held = await bot.client.post(
        "/console/login",
        data={"_csrf": token, "username": "zjj_office", "password": PASSWORD},
        allow_redirects=False,
    )
    assert held.status == 429 and "秒后再试" in await held.text()  # even the right password
    async with bot.app[SESSIONS]() as s:
        user = await s.scalar(select(ConsoleUser).where(ConsoleUser.username == "zjj_office"))
        assert user is not None and user.failed_logins == 5
        user.last_failed_at = bot.clock.now().replace(year=2000)  # the wait has passed
        await s.commit()
    assert (await login(bot.client, "zjj_office")).csrf


async def test_an_expired_session_sends_the_user_back_to_login(make_bot: Any) -> None:
    bot = await make_bot(console_session_hours=1 / 3600)  # one second
    await add_users(bot)
    staff = await login(bot.client, "zjj_office")
    await asyncio.sleep(2.2)
    status, _ = await staff.get("/console/j/zhangjiajie/audit")
    assert status == 302


async def test_html_in_audit_details_is_shown_as_text(bot: Any) -> None:
    async with bot.app[SESSIONS]() as s:
        audit(s, "cli", "units.alias_add", "zhangjiajie", unit="<script>alert(1)</script>")
        await s.commit()
    staff = await login(bot.client, "zjj_office")
    _, html = await staff.get("/console/j/zhangjiajie/audit")
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html


def test_user_create_hashes_the_password_and_refuses_bad_input(
    settings: Any, tmp_path: Path
) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long enough password\n", encoding="utf-8")
    args = ["user", "create", "--username", "li", "--password-file", str(secret)]
    ok = CliRunner().invoke(main, [*args, "-j", "zhangjiajie"])
    assert ok.exit_code == 0, ok.output
    again = CliRunner().invoke(main, [*args, "-j", "zhangjiajie"])
    assert again.exit_code == 2 and "已存在" in again.output
    no_place = CliRunner().invoke(
        main, ["user", "create", "--username", "x", "--password-file", str(secret)]
    )
    assert no_place.exit_code == 2 and "--jurisdiction" in no_place.output
    short = tmp_path / "short"
    short.write_text("123", encoding="utf-8")
    weak = CliRunner().invoke(
        main, [*args[:3], "wang", "--password-file", str(short), "-j", "rugao"]
    )
    assert weak.exit_code == 2 and "至少" in weak.output
    prompted = CliRunner().invoke(
        main,
        ["user", "create", "--username", "boss", "--role", "admin"],
        input="another long password\nanother long password\n",
    )
    assert prompted.exit_code == 0, prompted.output
    assert "another long password" not in prompted.output


async def _stored_hash(url: str) -> str | None:
    from models.db import create_engine, session_factory

    engine = create_engine(url)
    async with session_factory(engine)() as s:
        found = await s.scalar(
            select(ConsoleUser.password_hash).where(ConsoleUser.username == "li")
        )
    await engine.dispose()
    return found


def test_the_stored_password_is_an_argon2_hash(settings: Any, tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("a long enough password", encoding="utf-8")
    args = ["user", "create", "--username", "li", "--password-file", str(secret), "-j", "rugao"]
    assert CliRunner().invoke(main, args).exit_code == 0
    stored = asyncio.run(_stored_hash(settings.database_url))
    assert stored is not None and stored.startswith("$argon2id$") and "a long enough" not in stored
