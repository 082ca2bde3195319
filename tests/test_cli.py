"""The command line as a newcomer meets it: clear messages, right exit codes, no tracebacks."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from bot.cli import main


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    config = tmp_path / "donorbot.toml"
    values = {
        "DONORBOT_CONFIG": str(config),
        "DONORBOT_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path}/cli.db",
        "DONORBOT_LOG_LEVEL": "WARNING",
    }
    for k, v in values.items():
        monkeypatch.setenv(k, v)
    monkeypatch.delenv("DONORBOT_REDIS_URL", raising=False)
    result = CliRunner().invoke(main, ["demo", "config"])
    assert result.exit_code == 0, result.output
    return values


def test_demo_config_writes_five_jurisdictions_with_private_permissions(
    env: dict[str, str],
) -> None:
    path = Path(env["DONORBOT_CONFIG"])
    text = path.read_text(encoding="utf-8")
    for code in ("zhangjiajie", "yuxi", "luquan", "rugao", "qingpu"):
        assert f"[jurisdictions.{code}.wechat]" in text
    assert path.stat().st_mode & 0o077 == 0
    again = CliRunner().invoke(main, ["demo", "config"])
    assert again.exit_code == 0 and "keeping it" in again.output
    assert path.read_text(encoding="utf-8") == text  # never overwritten by accident


def test_db_upgrade_then_chat_say_answers_through_the_webhook(env: dict[str, str]) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["db", "upgrade"]).exit_code == 0
    result = runner.invoke(main, ["chat", "-j", "zhangjiajie", "--say", "你好"])
    assert result.exit_code == 0, result.output
    assert "张家界市献血办的小助手" in result.output


def test_chat_with_an_unknown_jurisdiction_says_which_exist(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["chat", "-j", "atlantis", "--say", "你好"])
    assert result.exit_code == 2
    assert "atlantis" in result.output and "zhangjiajie" in result.output
    assert "Traceback" not in result.output


def test_several_processes_without_redis_are_refused(env: dict[str, str]) -> None:
    result = CliRunner().invoke(main, ["serve", "--workers", "2"])
    assert result.exit_code == 2 and "DONORBOT_REDIS_URL" in result.output
    result = CliRunner().invoke(main, ["worker"])
    assert result.exit_code == 2 and "DONORBOT_REDIS_URL" in result.output


def test_a_broken_account_file_is_reported_not_a_traceback(env: dict[str, str]) -> None:
    Path(env["DONORBOT_CONFIG"]).write_text("[jurisdictions.x\nname=", encoding="utf-8")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 2 and "TOML" in result.output
    assert "Traceback" not in result.output


def test_a_bad_aes_key_names_the_setting(env: dict[str, str]) -> None:
    path = Path(env["DONORBOT_CONFIG"])
    text = path.read_text(encoding="utf-8")
    start = text.index('encoding_aes_key = "') + len('encoding_aes_key = "')
    path.write_text(text[:start] + "short" + text[start + 43 :], encoding="utf-8")
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 2
    assert "encoding_aes_key" in result.output and "43" in result.output


def test_secrets_can_come_from_the_environment(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bot.settings import load_settings

    monkeypatch.setenv("DONORBOT_JURISDICTIONS__RUGAO__WECHAT__SECRET", "from-env")
    settings = load_settings()
    wechat = settings.jurisdictions["rugao"].wechat
    assert wechat is not None and wechat.secret.get_secret_value() == "from-env"
    assert wechat.appid.startswith("wx")  # the rest still comes from the file
    assert "from-env" not in repr(settings)  # secrets never print


def test_db_upgrade_on_a_missing_postgres_database_says_so(
    env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(
        "DONORBOT_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/no_such_db_x"
    )
    result = CliRunner().invoke(main, ["db", "upgrade"])
    assert result.exit_code == 2 and "no_such_db_x" in result.output
    assert "Traceback" not in result.output
