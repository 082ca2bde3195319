"""The console's test world: a running app with console accounts, and a logged-in client."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from aiohttp.test_utils import TestClient

from bot.app import SESSIONS
from bot.console.security import hash_password
from models.console import ConsoleUser

PASSWORD = "correct horse battery"
USERS = {  # username → (role, jurisdiction)
    "zjj_office": ("office", "zhangjiajie"),
    "rugao_office": ("office", "rugao"),
    "admin": ("admin", None),
}
CSRF = re.compile(r'name="_csrf" value="([^"]+)"')


async def add_users(bot: Any) -> None:
    async with bot.app[SESSIONS]() as s:
        for name, (role, code) in USERS.items():
            s.add(
                ConsoleUser(
                    username=name,
                    password_hash=hash_password(PASSWORD),
                    role=role,
                    jurisdiction=code,
                )
            )
        await s.commit()


async def csrf_of(client: TestClient, path: str = "/console/login") -> str:
    resp = await client.get(path)
    found = CSRF.search(await resp.text())
    assert found, f"no CSRF token on {path}: {resp.status} {resp.url}"
    return found.group(1)


@dataclass
class Staff:
    client: TestClient
    csrf: str

    async def get(self, path: str, **kw: Any) -> tuple[int, str]:
        resp = await self.client.get(path, allow_redirects=False, **kw)
        return resp.status, await resp.text()

    async def post(self, path: str, data: Any = None, **kw: Any) -> tuple[int, str]:
        body = dict(data or {})
        body.setdefault("_csrf", self.csrf)
        resp = await self.client.post(path, data=body, allow_redirects=False, **kw)
        return resp.status, await resp.text()


async def login(client: TestClient, username: str, password: str = PASSWORD) -> Staff:
    token = await csrf_of(client)
    resp = await client.post(
        "/console/login",
        data={"_csrf": token, "username": username, "password": password},
        allow_redirects=False,
    )
    assert resp.status == 302, await resp.text()
    # the session id changes at login, and with it the token (every page's logout form has it)
    code = USERS.get(username, ("", None))[1] or "zhangjiajie"
    return Staff(client, await csrf_of(client, f"/console/j/{code}/audit"))
