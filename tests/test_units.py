"""The one unit-name resolver: exact → alias → normalised, else ambiguous or unmatched with
suggestions — never a silent guess. In memory, then on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy.ext.asyncio import AsyncSession

from models.db import create_engine, session_factory
from models.migrate import upgrade
from models.plans import JurisdictionRow, Unit
from models.units import (
    AliasConflict,
    UnitDirectory,
    add_alias,
    normalize_unit_name,
    resolve_unit,
)

ZJJ = [
    "市财政局及二级机构",
    "市委办公室",
    "吉首大学张家界校区",
    "吉首大学张家界学院",
    "张家界航院",
    "市人民医院(含市妇幼保健院)",
    "市场监督管理局",
    "市教育局及二级机构",
]


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("市财政局及二级机构", "财政局"),
        ("财政局", "财政局"),
        (" 市 财政局 ", "财政局"),
        ("市教育局及下属单位", "教育局"),
        ("市人民医院（含市妇幼保健院）", "人民医院(含市妇幼保健院)"),  # full-width brackets
        ("市人民医院(含市妇幼保健院)", "人民医院(含市妇幼保健院)"),
        ("ＡＢＣ公司", "abc公司"),  # full-width letters, any case
        ("市委办公室", "市委办公室"),  # 市委 is a word: the 市 stays
        ("市场监督管理局", "市场监督管理局"),  # so is 市场
        ("区委党校", "区委党校"),
        ("县政府", "县政府"),
        ("市局", "市局"),  # what would remain is not distinctive
        ("区财政局【本级】", "财政局(本级)"),
    ],
)
def test_normalize_unit_name(name: str, normalized: str) -> None:
    assert normalize_unit_name(name) == normalized


def directory(names: list[str], place: tuple[str, ...] = ("张家界市", "张家界")) -> UnitDirectory:
    d = UnitDirectory("zhangjiajie", place)
    for n, name in enumerate(names, start=1):
        d.add(Unit(id=n, name=name, jurisdiction="zhangjiajie"))
    return d


def test_exact_alias_and_normalised_matches_say_how_they_matched() -> None:
    d = directory(ZJJ)
    d.by_alias["财务局"] = d.by_name["市财政局及二级机构"]

    exact = d.resolve("市财政局及二级机构")
    assert (exact.status, exact.unit and exact.unit.name) == ("exact", "市财政局及二级机构")
    alias = d.resolve("财务局")
    assert (alias.status, alias.unit and alias.unit.name) == ("alias", "市财政局及二级机构")
    for spelling in ("财政局", "市财政局", "市 财政局", "张家界市财政局", "张家界财政局"):
        found = d.resolve(spelling)
        assert found.status == "normalized", spelling
        assert found.unit is not None and found.unit.name == "市财政局及二级机构"


def test_a_name_that_could_mean_several_units_is_ambiguous_never_a_pick() -> None:
    found = directory(ZJJ).resolve("吉首大学")

    assert found.status == "ambiguous"
    assert found.unit is None
    assert [c.name for c in found.choices] == ["吉首大学张家界学院", "吉首大学张家界校区"]


def test_two_units_with_the_same_normalised_name_are_ambiguous() -> None:
    found = directory(["市财政局", "区财政局"], place=()).resolve("财政局")

    assert found.status == "ambiguous"
    assert {c.name for c in found.choices} == {"市财政局", "区财政局"}


def test_an_unknown_name_is_unmatched_with_at_most_three_scored_suggestions() -> None:
    found = directory(ZJJ).resolve("张家界航空学院")

    assert found.status == "unmatched"
    assert found.unit is None
    assert 1 <= len(found.suggestions) <= 3
    assert found.suggestions[0].unit.name == "张家界航院"
    assert all(0 < s.score <= 100 for s in found.suggestions)
    scores = [s.score for s in found.suggestions]
    assert scores == sorted(scores, reverse=True)


def test_nothing_alike_gets_no_suggestion() -> None:
    found = directory(ZJJ).resolve("火星探测基地")
    assert found.status == "unmatched"
    assert found.suggestions == ()


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue("sqlite_url" if request.param == "sqlite" else "pg_url")
    upgrade(url)
    return url


@pytest.fixture
async def session(db_url: str) -> AsyncIterator[AsyncSession]:
    engine = create_engine(db_url)
    async with session_factory(engine)() as s:
        s.add(JurisdictionRow(code="zhangjiajie", name="张家界市"))
        s.add_all(
            Unit(jurisdiction="zhangjiajie", name=n, normalized=normalize_unit_name(n)) for n in ZJJ
        )
        await s.flush()
        yield s
    await engine.dispose()


async def test_resolve_unit_reads_the_database(session: AsyncSession) -> None:
    assert (await resolve_unit(session, "zhangjiajie", "张家界市财政局")).status == "normalized"
    assert (await resolve_unit(session, "zhangjiajie", "吉首大学")).status == "ambiguous"
    assert (await resolve_unit(session, "yuxi", "市财政局及二级机构")).status == "unmatched"


async def test_an_alias_resolves_afterwards_and_cannot_name_two_units(
    session: AsyncSession,
) -> None:
    before = await resolve_unit(session, "zhangjiajie", "吉大张家界校区")
    assert before.status == "unmatched"
    unit = before.suggestions[0].unit
    assert unit.name == "吉首大学张家界校区"

    assert await add_alias(session, "zhangjiajie", "吉大张家界校区", unit) is not None
    assert await add_alias(session, "zhangjiajie", " 吉大张家界校区 ", unit) is None  # already so

    after = await resolve_unit(session, "zhangjiajie", "吉大张家界校区")
    assert (after.status, after.unit) == ("alias", unit)
    other = (await resolve_unit(session, "zhangjiajie", "张家界航院")).unit
    assert other is not None
    with pytest.raises(AliasConflict, match="已指向「吉首大学张家界校区」"):
        await add_alias(session, "zhangjiajie", "吉大张家界校区", other)
