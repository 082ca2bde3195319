"""`donorbot …` (also `python -m bot …`): the one command-line entry point."""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import click
from sqlalchemy.exc import SQLAlchemyError

from bot.errors import DonorbotError
from bot.settings import Settings, load_settings


class _Group(click.Group):
    """Domain errors print as one clear line and exit 2 — never a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except DonorbotError as exc:
            click.secho(f"错误：{exc}", err=True, fg="red")
            sys.exit(2)


@click.group(cls=_Group)
def main() -> None:
    """donorbot: WeChat bot and messaging backend for blood-donation offices."""


def _settings() -> Settings:
    return load_settings()


# ---- database -----------------------------------------------------------------------
@main.group()
def db() -> None:
    """Database migrations."""


@db.command("upgrade")
@click.option("--revision", default="head", show_default=True)
def db_upgrade(revision: str) -> None:
    """Create or migrate the database to the latest schema."""
    from models.migrate import upgrade

    settings = _settings()
    try:
        upgrade(settings.database_url, revision)
    except (OSError, SQLAlchemyError) as exc:
        reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
        raise DonorbotError(
            f"无法连接或迁移数据库 {_safe_url(settings.database_url)}：{reason}"
        ) from None
    click.echo(f"database at {_safe_url(settings.database_url)} is at {revision}")


def _safe_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


# ---- serving ------------------------------------------------------------------------
@main.command()
@click.option("--host", default=None, help="default: DONORBOT_HOST or 127.0.0.1")
@click.option("--port", type=int, default=None, help="default: DONORBOT_PORT or 8080")
@click.option("--workers", type=int, default=1, show_default=True, help="server processes")
@click.option(
    "--fake-wechat",
    "fake_port",
    type=int,
    default=None,
    help="also run the fake WeChat API on this port (development)",
)
@click.option("--access-log/--no-access-log", default=False)
def serve(
    host: str | None, port: int | None, workers: int, fake_port: int | None, access_log: bool
) -> None:
    """Serve the webhook, health, metrics (and the outbox worker in embedded mode)."""
    settings = _settings()
    host = host or settings.host
    port = port or settings.port
    if workers > 1 and not settings.redis_url:
        raise DonorbotError(
            "多个进程必须共享 Redis（去重、access_token、会话状态）：请设置 DONORBOT_REDIS_URL，"
            "或使用 --workers 1"
        )
    if workers > 1:
        procs = [
            multiprocessing.Process(target=_serve_one, args=(host, port, True, access_log, i == 0))
            for i in range(workers)
        ]
        for p in procs:
            p.start()
        for p in procs:
            p.join()
        return
    _serve_one(host, port, False, access_log, True, fake_port)


def _serve_one(
    host: str,
    port: int,
    reuse_port: bool,
    access_log: bool,
    embedded_worker: bool,
    fake_port: int | None = None,
) -> None:
    from aiohttp import web

    from bot.app import create_app
    from bot.logs import setup_logging

    settings = _settings()
    setup_logging(settings.log_level, settings.log_json)
    app = create_app(settings, embedded_worker=embedded_worker)
    if fake_port:
        app.cleanup_ctx.insert(0, _fake_ctx(settings, fake_port))
    web.run_app(
        app,
        host=host,
        port=port,
        reuse_port=reuse_port or None,
        shutdown_timeout=10,
        access_log=web.access_logger if access_log else None,
        print=lambda msg: click.echo(f"donorbot serving on http://{host}:{port}"),
    )


def _fake_ctx(settings: Settings, port: int) -> Any:
    async def ctx(app: Any) -> Any:
        from bot.fake_wechat import FakeWeChat, run_fake

        fake = FakeWeChat(*_fake_accounts(settings), enforce_window=False)
        task = asyncio.create_task(run_fake("127.0.0.1", port, fake))
        yield
        task.cancel()

    return ctx


def _fake_accounts(settings: Settings) -> tuple[dict[str, str], None, dict[str, str]]:
    accounts = {
        j.wechat.appid: j.wechat.secret.get_secret_value()
        for j in settings.jurisdictions.values()
        if j.wechat
    }
    wecom = {
        j.wecom.corp_id: j.wecom.secret.get_secret_value()
        for j in settings.jurisdictions.values()
        if j.wecom
    }
    return accounts, None, wecom


@main.command()
def worker() -> None:
    """Run the outbox worker alone (scale-out mode: next to `serve --workers N`)."""
    from bot.logs import setup_logging
    from bot.worker import run_standalone_worker

    settings = _settings()
    if not settings.redis_url:
        raise DonorbotError(
            "单独的 worker 进程要与 serve 共享 access_token 和限流：请设置 DONORBOT_REDIS_URL。"
            "单进程部署时 `donorbot serve` 已内含 worker，无需另行启动。"
        )
    setup_logging(settings.log_level, settings.log_json)
    asyncio.run(run_standalone_worker(settings))


@main.command("fake-wechat")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=int, default=8081, show_default=True)
def fake_wechat(host: str, port: int) -> None:
    """Serve a fake of WeChat's API for development and tests."""
    from bot.fake_wechat import FakeWeChat, run_fake

    accounts, _, wecom = _fake_accounts(_settings())
    click.echo(f"fake WeChat API on http://{host}:{port}")
    asyncio.run(run_fake(host, port, FakeWeChat(accounts, None, wecom)))


# ---- talking to the bot ---------------------------------------------------------------
@main.command()
@click.option("--jurisdiction", "-j", required=True)
@click.option("--openid", default="o_chat_demo_user", show_default=True)
@click.option("--url", default=None, help="a running server, e.g. http://127.0.0.1:8080")
@click.option("--say", default=None, help="send one message, print the reply, exit")
@click.option("--wecom", is_flag=True, help="talk to the WeCom app instead")
def chat(jurisdiction: str, openid: str, url: str | None, say: str | None, wecom: bool) -> None:
    """Talk to the bot through the real webhook (signed, encrypted WeChat XML)."""
    from bot.chat import run_chat

    settings = _settings()
    settings.jurisdiction(jurisdiction)  # a clear error for an unknown one
    code = asyncio.run(run_chat(settings, jurisdiction, openid, url, say, wecom))
    sys.exit(code)


# ---- demo -----------------------------------------------------------------------------
@main.group()
def demo() -> None:
    """Development set-up: account file, seed data."""


SEED_JURISDICTIONS = {
    "zhangjiajie": ("张家界市", "hunan-2015"),
    "yuxi": ("玉溪市", "yuxi"),
    "luquan": ("禄劝彝族苗族自治县", "luquan-2016"),
    "rugao": ("如皋市", "jiangsu-2017"),
    "qingpu": ("上海市青浦区", "shanghai-1998"),
}


@demo.command("config")
@click.option("--path", type=click.Path(path_type=Path), default=None)
@click.option("--force", is_flag=True, help="overwrite an existing file")
def demo_config(path: Path | None, force: bool) -> None:
    """Write an account file for the five seed jurisdictions with development credentials."""
    path = path or Path(os.environ.get("DONORBOT_CONFIG", "donorbot.toml"))
    if path.exists() and not force:
        click.echo(f"{path} exists; keeping it (use --force to overwrite)")
        return
    lines = [
        "# Development accounts generated by `donorbot demo config`. Not for production.",
        'wechat_api_base = "http://127.0.0.1:8081"',
        'wecom_api_base = "http://127.0.0.1:8081"',
        f'id_hash_key = "{secrets.token_hex(32)}"',
        "",
    ]
    for n, (code, (name, policy)) in enumerate(SEED_JURISDICTIONS.items(), start=1):
        lines += [
            f"[jurisdictions.{code}]",
            f'name = "{name}"',
            'timezone = "Asia/Shanghai"',
            f'policy = "{policy}"',
            f"[jurisdictions.{code}.wechat]",
            f'appid = "wx{n:016d}"',
            'token = "devtoken"',
            f'encoding_aes_key = "{_aes_key()}"',
            'previous_encoding_aes_key = ""',
            f'secret = "{secrets.token_hex(16)}"',
            'mode = "safe"',
            f"[jurisdictions.{code}.reminders]",
            "enabled = true",
            f'booking_contact = "献血办（演示号码 0000-{n:07d}）"',
            f"[jurisdictions.{code}.wecom]",
            f'corp_id = "ww{n:016d}"',
            "agent_id = 1000002",
            'token = "devtoken"',
            f'encoding_aes_key = "{_aes_key()}"',
            f'secret = "{secrets.token_hex(16)}"',
            "",
        ]
    path.write_text("\n".join(lines), encoding="utf-8")
    os.chmod(path, 0o600)
    click.echo(f"wrote {path} with {len(SEED_JURISDICTIONS)} jurisdictions")


def _aes_key() -> str:
    import base64

    return base64.b64encode(secrets.token_bytes(32)).decode()[:43]


def _register_commands() -> None:
    from bot.commands import register

    register(main)


_register_commands()

if __name__ == "__main__":  # pragma: no cover
    main()
