"""Donation sites: the shipped `data/sites/<jurisdiction>.csv` files, opening hours, nearest.

The CSVs are APPROXIMATE demo data (see data/sites/README.md): district-level
descriptions and coordinates near each city, never claimed to be real addresses.
`load_sites` upserts them into the `sites` table (idempotent: a second run changes
nothing; a site dropped from a file is removed). `nearest_sites` orders a
jurisdiction's sites by great-circle distance and tells which are open now.
"""

from __future__ import annotations

import asyncio
import csv
import math
import re
from dataclasses import dataclass, field
from datetime import datetime, time
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from bot.errors import DonorbotError
from bot.imports.common import ensure_jurisdictions
from bot.settings import Settings
from models.people import Site

SITES_DIR = Path(__file__).resolve().parent.parent / "data" / "sites"
COLUMNS = ("name", "kind", "address", "latitude", "longitude", "hours", "note")
EARTH_RADIUS_KM = 6371.0088
_WEEKDAYS = "一二三四五六日"
_DAYS = re.compile(r"周([一二三四五六日天])\s*(?:至|到|-|~|—)\s*周([一二三四五六日天])")
_RANGE = re.compile(r"(\d{1,2}):(\d{2})\s*[-~—至到]\s*(\d{1,2}):(\d{2})")


class BadSiteFile(DonorbotError):
    pass


@dataclass(frozen=True)
class Hours:
    """「每天 08:30-17:30」「周一至周五 08:00-12:00、14:00-17:30」 read as days + ranges."""

    text: str
    weekdays: frozenset[int]  # 0 = Monday
    ranges: tuple[tuple[time, time], ...]

    @property
    def known(self) -> bool:
        return bool(self.weekdays and self.ranges)

    def is_open(self, at: datetime) -> bool:
        if at.weekday() not in self.weekdays:
            return False
        now = at.time()
        return any(start <= now < end for start, end in self.ranges)


def parse_hours(text: str) -> Hours:
    """Unknown wording gives `known == False` (the site is then listed with its text only)."""
    days: set[int] = set()
    if "每天" in text or "每日" in text or "全年" in text:
        days = set(range(7))
    elif "工作日" in text:
        days = set(range(5))
    elif "周末" in text:
        days = {5, 6}
    for m in _DAYS.finditer(text):
        first, last = (_WEEKDAYS.index(g.replace("天", "日")) for g in m.groups())
        days |= {d % 7 for d in range(first, last + 1 if last >= first else last + 8)}
    ranges = []
    for m in _RANGE.finditer(text):
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 < 24 and h2 < 24 and m1 < 60 and m2 < 60:
            ranges.append((time(h1, m1), time(h2, m2)))
    return Hours(text, frozenset(days), tuple(ranges))


def haversine_km(a: tuple[float, float], b: tuple[float, float]) -> float:
    """Great-circle distance between two (latitude, longitude) points in kilometres."""
    lat1, lon1, lat2, lon2 = (math.radians(v) for v in (*a, *b))
    h = (
        math.sin((lat2 - lat1) / 2) ** 2
        + math.cos(lat1) * math.cos(lat2) * math.sin((lon2 - lon1) / 2) ** 2
    )
    return 2 * EARTH_RADIUS_KM * math.asin(math.sqrt(h))


@dataclass(frozen=True)
class NearSite:
    name: str
    kind: str
    address: str
    hours: str
    note: str
    distance_km: float
    open_now: bool


async def nearest_sites(
    session: AsyncSession, jurisdiction: str, point: tuple[float, float], at: datetime
) -> list[NearSite]:
    """Every site with coordinates, nearest first; `at` is the local time (jurisdiction tz)."""
    rows = await session.scalars(
        select(Site).where(Site.jurisdiction == jurisdiction, Site.latitude.is_not(None))
    )
    out = []
    for s in rows:
        assert s.latitude is not None and s.longitude is not None
        km = haversine_km(point, (s.latitude, s.longitude))
        open_now = parse_hours(s.hours).is_open(at)
        out.append(NearSite(s.name, s.kind, s.address, s.hours, s.note, km, open_now))
    return sorted(out, key=lambda s: s.distance_km)


@dataclass
class SitesReport:
    loaded: dict[str, int] = field(default_factory=dict)
    removed: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # files of jurisdictions not configured

    def lines(self) -> list[str]:
        out = [f"献血点 {code}: {n} 个（示意数据）" for code, n in sorted(self.loaded.items())]
        out += [f"献血点 {code}: 未配置该辖区，跳过" for code in self.skipped]
        return out


def read_sites(path: Path) -> list[dict[str, str]]:
    """The rows of one site file; BadSiteFile names the file and row of any problem."""
    with path.open(encoding="utf-8", newline="") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise BadSiteFile(f"{path.name}: 表头应为 {','.join(COLUMNS)}")
        rows = list(reader)
    for n, row in enumerate(rows, start=2):
        try:
            lat, lon = float(row["latitude"]), float(row["longitude"])
        except ValueError:
            raise BadSiteFile(f"{path.name} 第{n}行：经纬度不是数字") from None
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or not row["name"].strip():
            raise BadSiteFile(f"{path.name} 第{n}行：名称为空或经纬度超出范围")
    return rows


def read_directory(directory: Path) -> dict[str, list[dict[str, str]]]:
    """Every `<jurisdiction>.csv` of `directory`, read and checked (blocking: run in a thread)."""
    return {path.stem: read_sites(path) for path in sorted(directory.glob("*.csv"))}


async def load_sites(
    session: AsyncSession, settings: Settings, directory: Path = SITES_DIR
) -> SitesReport:
    """Upsert every `<jurisdiction>.csv` of `directory` into `sites`; never commits."""
    report = SitesReport()
    files = await asyncio.to_thread(read_directory, directory)
    for code, rows in files.items():
        if code not in settings.jurisdictions:
            report.skipped.append(code)
            continue
        await ensure_jurisdictions(session, settings, [code])
        existing = {
            s.name: s for s in await session.scalars(select(Site).where(Site.jurisdiction == code))
        }
        for row in rows:
            site = existing.get(row["name"]) or Site(jurisdiction=code, name=row["name"])
            if site.id is None:
                session.add(site)
            site.kind, site.address, site.hours = row["kind"], row["address"], row["hours"]
            site.latitude, site.longitude = float(row["latitude"]), float(row["longitude"])
            site.note = row["note"]
        gone = set(existing) - {r["name"] for r in rows}
        if gone:
            await session.execute(
                delete(Site).where(Site.jurisdiction == code, Site.name.in_(gone))
            )
        report.loaded[code], report.removed[code] = len(rows), len(gone)
    await session.flush()
    return report
