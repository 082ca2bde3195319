"""Sites: the shipped (approximate) CSVs, the loader, hours, and 「附近哪里能献血」 end to end."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.app import SESSIONS
from bot.simulator import event_xml, message_xml
from bot.sites import SITES_DIR, BadSiteFile, haversine_km, load_sites, parse_hours, read_sites

SEEDS = ("zhangjiajie", "yuxi", "luquan", "rugao", "qingpu")
# next to the 如皋 city-centre demo site
RUGAO_CENTRE = ("32.3712", "120.5741")


def test_every_seed_jurisdiction_has_an_approximate_site_file() -> None:
    assert "APPROXIMATE" in (SITES_DIR / "README.md").read_text(encoding="utf-8")
    for code in SEEDS:
        rows = read_sites(SITES_DIR / f"{code}.csv")
        assert len(rows) >= 3
        assert all("示意" in r["note"] and "示意" in r["name"] for r in rows)
        assert all(parse_hours(r["hours"]).known for r in rows)


def test_hours_and_distance() -> None:
    week = parse_hours("周二至周日 09:00-17:00")
    assert week.is_open(datetime(2026, 3, 15, 10, 0))  # Sunday
    assert not week.is_open(datetime(2026, 3, 16, 10, 0))  # Monday
    assert not week.is_open(datetime(2026, 3, 15, 17, 0))  # closes at 17:00
    split = parse_hours("工作日 08:30-12:00、14:00-17:30")
    assert split.is_open(datetime(2026, 3, 16, 15, 0))
    assert not split.is_open(datetime(2026, 3, 16, 13, 0))
    assert not parse_hours("请电话预约").known
    # Beijing → Shanghai is about 1068 km
    assert 1060 < haversine_km((39.9042, 116.4074), (31.2304, 121.4737)) < 1075


def test_a_bad_site_file_names_the_row(tmp_path: Path) -> None:
    bad = tmp_path / "rugao.csv"
    header = "name,kind,address,latitude,longitude,hours,note\n"
    bad.write_text(header + "甲,献血屋,示意,北纬,120,每天 08:00-17:00,示意\n", encoding="utf-8")
    with pytest.raises(BadSiteFile, match="第2行"):
        read_sites(bad)


async def test_loader_is_idempotent(make_bot: Any) -> None:
    bot = await make_bot()
    async with bot.app[SESSIONS]() as s:
        first = await load_sites(s, bot.settings)
        await s.commit()
    async with bot.app[SESSIONS]() as s:
        second = await load_sites(s, bot.settings)
        await s.commit()
    assert first.loaded == second.loaded and first.loaded["rugao"] == 3
    assert second.removed["rugao"] == 0
    assert "yuxi" in first.skipped  # not configured in the test accounts


async def test_asking_for_sites_asks_for_a_location(make_bot: Any) -> None:
    bot = await make_bot()
    for text in ("附近哪里能献血", "献血屋在哪"):
        reply = await bot.say("rugao", text)
        assert reply is not None and "发送您的位置" in reply


async def _loaded(make_bot: Any, at: datetime) -> Any:
    bot = await make_bot()
    bot.clock.set(at)
    async with bot.app[SESSIONS]() as s:
        await load_sites(s, bot.settings)
        await s.commit()
    return bot


async def test_a_location_message_lists_open_sites_nearest_first(make_bot: Any) -> None:
    # Sunday 10:00 in Shanghai: all three 如皋 demo sites are open
    bot = await _loaded(make_bot, datetime(2026, 3, 15, 2, 0, tzinfo=UTC))
    lat, lon = RUGAO_CENTRE
    xml = message_xml("o_loc", "location", Location_X=lat, Location_Y=lon, Scale="15", Label="如皋")
    status, reply, _ = await bot.post("rugao", xml)
    assert status == 200 and reply is not None
    text = str(reply["Content"])
    assert text.index("如皋市中心献血屋") < text.index("如皋商业街献血屋")
    assert "约0.0公里" in text and "每天 08:30-17:30" in text
    assert "示意数据" in text and "现在未开放" not in text


async def test_closed_sites_come_after_with_their_hours(make_bot: Any) -> None:
    # Monday 19:00 in Shanghai: everything in 如皋 is closed
    bot = await _loaded(make_bot, datetime(2026, 3, 16, 11, 0, tzinfo=UTC))
    lat, lon = RUGAO_CENTRE
    xml = event_xml("o_loc", "LOCATION", Latitude=lat, Longitude=lon, Precision="30")
    status, reply, _ = await bot.post("rugao", xml)
    assert status == 200 and reply is not None
    text = str(reply["Content"])
    assert "都未开放" in text and "现在未开放" in text and "开放时间：每天 08:30-17:30" in text


async def test_no_sites_loaded_is_said(make_bot: Any) -> None:
    bot = await make_bot()
    xml = message_xml("o_loc", "location", Location_X="32.37", Location_Y="120.57", Label="x")
    _, reply, _ = await bot.post("rugao", xml)
    assert reply is not None and "还没有录入献血点" in str(reply["Content"])
