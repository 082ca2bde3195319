"""`donorbot broadcast …` as the office uses it: previews, ids, idempotency, clear refusals."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from bot.cli import main
from bot.settings import Settings
from models.broadcasts import Broadcast, Delivery
from models.db import create_engine, session_factory
from models.people import AuditEntry
from models.users import Binding

SEED = Path(__file__).resolve().parents[1] / "data" / "seed_plans" / "zhangjiajie-2018.csv"
OFFICE = ["o_office_1", "o_office_2", "o_office_3"]


def run(*args: str) -> Result:
    result = CliRunner().invoke(main, list(args))
    assert "Traceback" not in result.output, result.output
    return result


async def _bind_office(url: str) -> None:
    engine = create_engine(url)
    async with session_factory(engine)() as s:
        s.add_all(Binding(jurisdiction="zhangjiajie", openid=o, role="office") for o in OFFICE)
        await s.commit()
    await engine.dispose()


async def _count(url: str, what: type) -> int:
    engine = create_engine(url)
    async with session_factory(engine)() as s:
        n = await s.scalar(select(func.count()).select_from(what))
    await engine.dispose()
    return int(n or 0)


@pytest.fixture
def office(settings: Settings) -> Settings:
    assert run("plan", "import", str(SEED)).exit_code == 0
    asyncio.run(_bind_office(settings.database_url))
    return settings


NOTICE = (
    "broadcast", "create", "-j", "zhangjiajie", "--audience", "office", "--channel", "template",
    "--template-id", "TPL1", "--param", "thing1=本月献血通报", "--param", "thing2=请查收",
)  # fmt: skip


def test_a_dry_run_previews_the_audience_and_writes_nothing(office: Settings) -> None:
    result = run(*NOTICE, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "收件人：3 人" in result.output and "thing1=本月献血通报" in result.output
    assert "没有创建群发" in result.output
    hidden = run(*NOTICE, "--param", "remark=请回复", "--dry-run")
    assert hidden.exit_code == 0 and "remark" in hidden.output and "不再显示" in hidden.output
    assert asyncio.run(_count(office.database_url, Broadcast)) == 0


def test_the_same_key_twice_prints_the_same_id_and_status_counts_it(office: Settings) -> None:
    first = run(*NOTICE, "--key", "notice-1", "--send-at", "2030-01-01T09:00")
    assert first.exit_code == 0, first.output
    again = run(*NOTICE, "--key", "notice-1")
    assert again.exit_code == 0 and "没有重复创建" in again.output
    bid = first.output.strip().splitlines()[-1]
    assert again.output.strip().splitlines()[-1] == bid and bid.isdigit()
    assert asyncio.run(_count(office.database_url, Delivery)) == 3
    status = run("broadcast", "status", bid, "--json")
    assert json.loads(status.output) == {
        "pending": 3, "sending": 0, "sent": 0, "failed": 0, "skipped": 0,
    }  # fmt: skip
    listing = run("broadcast", "list", "-j", "zhangjiajie")
    assert listing.exit_code == 0 and bid in listing.output and "已发 0/3" in listing.output
    assert asyncio.run(_count(office.database_url, AuditEntry)) >= 1

    cancelled = run("broadcast", "cancel", bid)
    assert cancelled.exit_code == 0 and "3 条" in cancelled.output
    assert json.loads(run("broadcast", "status", bid, "--json").output)["skipped"] == 3
    twice = run("broadcast", "cancel", bid)
    assert twice.exit_code == 2 and "已经取消" in twice.output
    retry = run("broadcast", "retry-failed", bid)
    assert retry.exit_code == 2 and "已取消" in retry.output


@pytest.mark.parametrize(
    ("extra", "says"),
    [
        (("--send-at", "next tuesday"), "ISO-8601"),
        (("--param", "keyword2={{ nobody }}"), "nobody"),
        (("--param", "oops"), "key=value"),
    ],
)
def test_bad_input_is_refused_with_a_reason(
    office: Settings, extra: tuple[str, ...], says: str
) -> None:
    result = run(*NOTICE, *extra)
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert asyncio.run(_count(office.database_url, Broadcast)) == 0


def test_audience_mistakes_are_refused_with_a_reason(office: Settings) -> None:
    base = (
        "broadcast",
        "create",
        "-j",
        "zhangjiajie",
        "--channel",
        "custom",
        "--param",
        "content=hi",
    )
    no_template = run("broadcast", "create", "-j", "zhangjiajie", "--audience", "office",
                      "--channel", "template", "--param", "thing1=x")  # fmt: skip
    assert no_template.exit_code == 2 and "--template-id" in no_template.output
    bad_type = run(*base, "--audience", "donors", "--blood-type", "C")
    assert bad_type.exit_code == 2 and "血型" in bad_type.output
    bad_unit = run(*base, "--audience", "liaisons", "--unit", "慈利")
    assert bad_unit.exit_code == 2 and "慈利县" in bad_unit.output  # the closest names
    nobody = run(*base, "--audience", "liaisons")
    assert nobody.exit_code == 2 and "没有可发送的人" in nobody.output
    missing = run("broadcast", "status", "999")
    assert missing.exit_code == 2 and "999" in missing.output
    assert asyncio.run(_count(office.database_url, Broadcast)) == 0
