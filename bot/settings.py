"""One Settings object, built once at start-up and injected everywhere.

Values come from ``DONORBOT_*`` environment variables and from the account file
(``DONORBOT_CONFIG``, default ``donorbot.toml``) that lists the jurisdictions and
their WeChat credentials.  Environment variables win over the file, so a secret can
stay out of it: ``DONORBOT_JURISDICTIONS__ZHANGJIAJIE__WECHAT__SECRET=…``.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from bot.errors import ConfigError

Mode = Literal["plain", "compatible", "safe"]


class WeChatAccount(BaseModel):
    """An Official Account (公众号) as configured on mp.weixin.qq.com."""

    appid: str
    token: SecretStr
    encoding_aes_key: SecretStr = SecretStr("")
    previous_encoding_aes_key: SecretStr = SecretStr("")
    secret: SecretStr = SecretStr("")
    mode: Mode = "safe"

    @field_validator("encoding_aes_key", "previous_encoding_aes_key")
    @classmethod
    def _aes_key_length(cls, value: SecretStr) -> SecretStr:
        raw = value.get_secret_value()
        if raw and len(raw) != 43:
            raise ValueError("EncodingAESKey must be exactly 43 characters")
        return value


class WeComApp(BaseModel):
    """A self-built WeCom (企业微信) application."""

    corp_id: str
    agent_id: int
    token: SecretStr
    encoding_aes_key: SecretStr
    secret: SecretStr = SecretStr("")

    @field_validator("encoding_aes_key")
    @classmethod
    def _aes_key_length(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) != 43:
            raise ValueError("EncodingAESKey must be exactly 43 characters")
        return value


class Reminders(BaseModel):
    """Automatic reminders of one jurisdiction (docs/broadcasts.md)."""

    enabled: bool = False  # `demo config` turns them on; an office opts in per account
    days_before: int = Field(default=7, ge=1, le=28)  # before the month of a unit's plan line
    mid_month_day: int = Field(default=15, ge=2, le=28)  # units below `mid_month_below` are told
    mid_month_below: float = Field(default=0.5, gt=0, le=1)
    month_end: bool = True  # a 通报 to the office staff on the last working day
    channel: Literal["custom", "template", "subscribe"] = "custom"
    template_id: str = ""
    # template channel: WeChat field name -> Jinja text over the reminder's parameters
    fields: dict[str, str] = Field(default_factory=dict)
    booking_contact: str = ""  # e.g. 「献血办 0744-0000000」; shown to liaisons


class Jurisdiction(BaseModel):
    name: str
    timezone: str = "Asia/Shanghai"
    policy: str = ""
    wechat: WeChatAccount | None = None
    wecom: WeComApp | None = None
    # no non-critical pushes in these local hours ("" = none); "21:00-08:00" wraps midnight
    quiet_hours: str = "21:00-08:00"
    reminders: Reminders = Field(default_factory=lambda: Reminders())

    @field_validator("quiet_hours")
    @classmethod
    def _quiet_hours(cls, value: str) -> str:
        if value:
            from bot.broadcasts.quiet import parse_quiet_hours

            parse_quiet_hours(value)
        return value


class _TomlSource(PydanticBaseSettingsSource):
    """Reads the account file named by DONORBOT_CONFIG (missing file = no jurisdictions)."""

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return None, field_name, False  # pragma: no cover - __call__ does the work

    def __call__(self) -> dict[str, Any]:
        path = Path(os.environ.get("DONORBOT_CONFIG", "donorbot.toml"))
        if not path.exists():
            return {}
        try:
            with path.open("rb") as fh:
                data = tomllib.load(fh)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"账号配置文件 {path} 不是有效的 TOML：{exc}") from exc
        return data


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="DONORBOT_",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: str = "sqlite+aiosqlite:///var/donorbot.db"
    redis_url: str | None = None
    redis_prefix: str = "donorbot:"
    wechat_api_base: str = "https://api.weixin.qq.com"
    wecom_api_base: str = "https://qyapi.weixin.qq.com"
    host: str = "127.0.0.1"
    port: int = 8080
    reply_budget_seconds: float = 4.0
    freshness_seconds: int = 300
    dedup_ttl_seconds: int = 120
    max_body_bytes: int = 64 * 1024
    text_limit_bytes: int = 2048
    log_level: str = "INFO"
    log_json: bool = True
    id_hash_key: SecretStr = SecretStr("development-only-id-hash-key")
    # broadcasts: sends per second per account, shared by all workers (0 = no limit)
    broadcast_rate: float = 50.0
    broadcast_lease_seconds: float = 60.0  # a dead worker's rows return after this
    broadcast_batch: int = 200  # deliveries claimed at a time
    broadcast_concurrency: int = 32  # sends in flight per worker
    reminders_every_seconds: float = 60.0  # how often a worker looks for due reminders
    reports_dir: str = "var/reports"  # month-end 通报 workbooks
    # office console: cookies marked Secure (set true when served over HTTPS)
    console_https: bool = False
    console_session_hours: float = 8.0
    console_max_upload_mb: int = 20
    # signs/encrypts console session cookies in embedded mode (default: derived from id_hash_key)
    console_secret_key: SecretStr = SecretStr("")
    jurisdictions: dict[str, Jurisdiction] = Field(default_factory=dict)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _TomlSource(settings_cls), file_secret_settings)

    def jurisdiction(self, code: str) -> Jurisdiction:
        try:
            return self.jurisdictions[code]
        except KeyError:
            known = "、".join(sorted(self.jurisdictions)) or "（无）"
            raise ConfigError(f"辖区 {code!r} 不在账号配置文件中；已配置的辖区：{known}") from None

    @property
    def is_postgres(self) -> bool:
        return self.database_url.startswith("postgresql")


def load_settings(**overrides: Any) -> Settings:
    """Build the Settings once; a bad account file becomes a ConfigError, not a traceback."""
    from pydantic import ValidationError

    try:
        return Settings(**overrides)
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise ConfigError("配置有误：\n" + "\n".join(lines)) from exc
