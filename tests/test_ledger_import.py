"""`ledger import`: the 用血/报销 ledger (synthetic donors) on SQLite and PostgreSQL — rows
reduce the remaining allowance, unknown donors and relations are refused, re-import is a no-op."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.cli import main
from bot.clock import FixedClock
from bot.imports import ImportFailed, import_donation_file, import_ledger_file
from bot.imports.ledger import relation
from bot.imports.values import CellError
from bot.policy import entitlement, load_policies
from bot.privacy import keyed_hash
from bot.settings import Settings
from handlers.donor import _donation, _ledger
from models.db import create_engine, session_factory
from models.donations import BloodUse, Donor
from models.donor_extras import donor_donations, donor_ledger

HERE = Path(__file__).resolve().parent
DATA = HERE / "data" / "imports"
DONATIONS = DATA / "donations-zhangjiajie.csv"
LEDGER = DATA / "ledger-zhangjiajie.csv"
ERRORS = DATA / "ledger-errors.csv"
POLICIES = HERE.parent / "data" / "policies"
TODAY = date(2026, 11, 23)
CLOCK = FixedClock(datetime(2026, 11, 23, 4, 0, tzinfo=UTC))
Sessions = async_sessionmaker[AsyncSession]


@pytest.fixture
async def sessions(settings: Settings) -> AsyncIterator[Sessions]:
    engine = create_engine(settings.database_url)
    factory = session_factory(engine)
    await import_donation_file(factory, settings, DONATIONS)
    yield factory
    await engine.dispose()


async def ledger_rows(sessions: Sessions) -> list[tuple[date, int, str, str]]:
    async with sessions() as s:
        uses = await s.scalars(select(BloodUse).order_by(BloodUse.used_at, BloodUse.id))
        return [(u.used_at, u.volume_ml, u.relation, u.note) for u in uses]


async def donor_id(sessions: Sessions, settings: Settings, code: str) -> int:
    key = settings.id_hash_key.get_secret_value()
    async with sessions() as s:
        found = await s.scalar(
            select(Donor.id).where(
                Donor.jurisdiction == "zhangjiajie", Donor.id_hash == keyed_hash(key, code)
            )
        )
    assert found is not None
    return found


async def remaining(sessions: Sessions, settings: Settings, code: str, who: str) -> int | None:
    """The entitlement answer as the donor handler computes it (same row → engine mapping)."""
    policy = load_policies(POLICIES)[settings.jurisdiction("zhangjiajie").policy]
    donor = await donor_id(sessions, settings, code)
    async with sessions() as s:
        donations = [_donation(r) for r in await donor_donations(s, donor)]
        ledger = [_ledger(u) for u in await donor_ledger(s, donor)]
    return entitlement(policy, donations, ledger, today=TODAY, relation=who).remaining_ml


async def test_a_good_import_reduces_the_remaining_allowance(
    settings: Settings, sessions: Sessions
) -> None:
    own_before = await remaining(sessions, settings, "TEST-D-0002", "self")
    spouse_before = await remaining(sessions, settings, "TEST-D-0002", "spouse")
    assert own_before is not None and own_before >= 200

    report = await import_ledger_file(sessions, settings, LEDGER, clock=CLOCK)

    assert (report.rows, report.added, report.added_ml, report.unchanged) == (3, 3, 600, 0)
    assert await ledger_rows(sessions) == [
        (date(2025, 6, 1), 200, "self", "市医院"),
        (date(2025, 7, 1), 100, "spouse", ""),
        (date(2025, 8, 1), 300, "parents", "县医院"),
    ]
    assert await remaining(sessions, settings, "TEST-D-0002", "self") == own_before - 200
    assert spouse_before, "hunan-2015 has a family pool"
    after = await remaining(sessions, settings, "TEST-D-0002", "spouse")
    assert after == max(0, spouse_before - 100)


async def test_reimport_changes_nothing(settings: Settings, sessions: Sessions) -> None:
    await import_ledger_file(sessions, settings, LEDGER, clock=CLOCK)
    before = await ledger_rows(sessions)
    again = await import_ledger_file(sessions, settings, LEDGER, clock=CLOCK)
    assert (again.added, again.unchanged, again.changed) == (0, 3, False)
    assert await ledger_rows(sessions) == before


async def test_dry_run_writes_nothing(settings: Settings, sessions: Sessions) -> None:
    report = await import_ledger_file(sessions, settings, LEDGER, dry_run=True, clock=CLOCK)
    assert (report.added, report.added_ml) == (3, 600)
    assert await ledger_rows(sessions) == []


async def test_every_bad_row_is_reported_and_nothing_written(
    settings: Settings, sessions: Sessions
) -> None:
    with pytest.raises(ImportFailed) as caught:
        await import_ledger_file(sessions, settings, ERRORS, clock=CLOCK)

    messages = [str(i) for i in caught.value.issues]
    expected = [
        ("第3行「relation」列：关系「表兄弟」无法识别", 3),
        ("第4行「volume_ml」列：用血量「0」不能小于 1", 4),
        ("第5行「volume_ml」列：用血量「6000」超过 5000 毫升", 5),
        ("第6行「used_at」列：用血日期「2099-01-01」晚于今天（2026-11-23）", 6),
        ("第7行「used_at」列：用血日期「2025-13-01」无法识别", 7),
        ("第9行：与第8行重复", 9),
        ("第10行「jurisdiction」列：辖区「nowhere」不在账号配置文件中", 10),
        ("第2行「donor_id」列：辖区「zhangjiajie」没有此献血者", 2),
    ]
    assert len(messages) == len(expected), messages
    for message, (fragment, _) in zip(messages, expected, strict=True):
        assert message.startswith("ledger-errors.csv "), message
        assert fragment in message, (fragment, message)
    assert "TEST-D-9999" not in "\n".join(messages)
    assert await ledger_rows(sessions) == []


async def test_one_unknown_donor_fails_the_whole_file(
    settings: Settings, sessions: Sessions, tmp_path: Path
) -> None:
    path = tmp_path / "用血.csv"
    path.write_text(
        LEDGER.read_text(encoding="utf-8") + "zhangjiajie,TEST-D-0404,2025-09-01,100,本人,\n",
        encoding="utf-8",
    )
    with pytest.raises(ImportFailed, match="第5行「身份证号」列：辖区「zhangjiajie」没有此献血者"):
        await import_ledger_file(sessions, settings, path, clock=CLOCK)
    assert await ledger_rows(sessions) == []
    async with sessions() as s:  # the ledger never creates donors
        assert len(list(await s.scalars(select(Donor)))) == 8


@pytest.mark.parametrize(
    ("word", "name"),
    [
        ("本人", "self"),
        ("配偶", "spouse"),
        ("父母", "parents"),
        ("子女", "children"),
        ("兄弟姐妹", "siblings"),
        ("配偶父母", "spouse_parents"),
        ("祖父母", "grandparents"),
        ("孙子女", "grandchildren"),
        ("spouse", "spouse"),
        (" 配偶 ", "spouse"),
    ],
)
def test_relation_words(word: str, name: str) -> None:
    assert relation(word) == name


@pytest.mark.parametrize("word", ["表兄弟", "朋友", "同事", "other", ""])
def test_unknown_relations_are_refused_not_guessed(word: str) -> None:
    with pytest.raises(CellError):
        relation(word)


def test_cli_exit_codes(settings: Settings, tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["donations", "import", str(DONATIONS)]).exit_code == 0

    dry = runner.invoke(main, ["ledger", "import", str(LEDGER), "--dry-run", "--actor", "t"])
    assert dry.exit_code == 0, dry.output
    assert "新增用血记录 3 条，共 600 毫升" in dry.output and "试运行" in dry.output

    done = runner.invoke(main, ["ledger", "import", str(LEDGER)])
    assert done.exit_code == 0, done.output
    again = runner.invoke(main, ["ledger", "import", str(LEDGER)])
    assert again.exit_code == 0 and "已有（跳过）3 条" in again.output

    bad = runner.invoke(main, ["ledger", "import", str(ERRORS)])
    assert bad.exit_code == 1
    assert "发现 8 个错误，未导入任何数据" in bad.output and "Traceback" not in bad.output
    for secret in ("TEST-D-0001", "TEST-D-0002", "TEST-D-9999"):
        assert secret not in dry.output + done.output + bad.output


def test_cli_database_error_exits_2(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DONORBOT_DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path}/empty.db")
    result = CliRunner().invoke(main, ["ledger", "import", str(LEDGER)])
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output and "db upgrade" in result.output
