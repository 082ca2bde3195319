"""One donation row → a staged record, or problems with its row and column.

Identity never leaves this module in clear: the donor id (ID number or the station's donor
code) becomes a keyed hash, the name a masked form plus a keyed hash (for binding later).
"""

from __future__ import annotations

from datetime import date
from typing import Any, NamedTuple

from bot.clock import Clock, local_now
from bot.imports import values
from bot.imports.issues import IssueList
from bot.imports.values import WHOLE_BLOOD_VOLUMES, CellError
from bot.privacy import keyed_hash, mask_name
from bot.settings import Settings
from models.units import UnitDirectory


class Record(NamedTuple):
    """A validated donation row, identity already hashed and masked."""

    jurisdiction: str
    record_id: str
    donated_at: date
    id_hash: str
    name_masked: str
    name_hash: str | None
    blood_type: str | None
    kind: str
    volume_ml: int
    therapeutic_units: float
    unit_id: int | None
    unit_raw: str | None
    unit_raw_normalized: str | None
    synthetic: bool


PLATELET_UNITS = (1.0, 1.5, 2.0)
_HASH_CACHE = 200_000


class DonationRowParser:
    """Validates rows against the account file, the clock and the units (loaded once)."""

    def __init__(
        self,
        settings: Settings,
        clock: Clock,
        directories: dict[str, UnitDirectory],
        issues: IssueList,
        file: str,
        headers: dict[str, str],
        *,
        synthetic: bool = False,
    ) -> None:
        self.key = settings.id_hash_key.get_secret_value()
        self.today = {
            code: local_now(clock, j.timezone).date() for code, j in settings.jurisdictions.items()
        }
        self.directories = directories
        self.issues = issues
        self.file = file
        self.headers = headers
        self.synthetic = synthetic
        self.units: dict[tuple[str, str], tuple[int | None, str]] = {}
        self.unmatched: dict[tuple[str, str], int] = {}
        self._hashes: dict[str, str] = {}

    def _hash(self, value: str) -> str:
        """keyed_hash, remembered: a station export repeats donors and names many times."""
        digest = self._hashes.get(value)
        if digest is None:
            if len(self._hashes) >= _HASH_CACHE:
                self._hashes.clear()
            digest = self._hashes[value] = keyed_hash(self.key, value)
        return digest

    def parse(self, row_no: int, row: dict[str, Any]) -> Record | None:
        before = self.issues.total
        jurisdiction = self._cell(row_no, row, "jurisdiction", self._jurisdiction)
        record_id = self._cell(row_no, row, "record_id", _record_id)
        donated_at = self._cell(row_no, row, "donated_at", values.parse_date)
        donor_id = self._cell(row_no, row, "donor_id", lambda v: values.required(v, "献血者编号"))
        blood = self._cell(row_no, row, "blood_type", values.blood_type)
        kind = self._cell(row_no, row, "kind", values.donation_kind)
        if self.issues.total > before:
            return None
        if donated_at > self.today.get(jurisdiction, donated_at):
            self._add(
                row_no,
                "donated_at",
                f"献血日期 {donated_at} 晚于今天（{self.today[jurisdiction]}）",
            )
        amounts = self._amounts(row_no, row, kind)
        if amounts is None or self.issues.total > before:
            return None
        name = values.text(row.get("donor_name"))
        unit_id, unit_raw, unit_norm = self._unit(jurisdiction, values.text(row.get("unit")))
        return Record(
            jurisdiction=jurisdiction,
            record_id=record_id,
            donated_at=donated_at,
            id_hash=self._hash(donor_id),
            name_masked=mask_name(name),
            name_hash=self._hash(name) if name else None,
            blood_type=blood,
            kind=kind,
            volume_ml=amounts[0],
            therapeutic_units=amounts[1],
            unit_id=unit_id,
            unit_raw=unit_raw,
            unit_raw_normalized=unit_norm,
            synthetic=self.synthetic,
        )

    def _amounts(self, row_no: int, row: dict[str, Any], kind: str) -> tuple[int, float] | None:
        raw_volume, raw_units = row.get("volume_ml"), row.get("therapeutic_units")
        try:
            if kind == "whole_blood":
                volume = values.integer(raw_volume, "献血量")
                if volume not in WHOLE_BLOOD_VOLUMES:
                    raise CellError(f"全血献血量只能是 200、300 或 400 毫升（此行 {volume}）")
                if values.text(raw_units) and values.decimal(raw_units, "治疗量") != 0:
                    raise CellError("全血不填治疗量（治疗量只用于机采血小板）")
                return volume, 0.0
            volume = values.integer(raw_volume, "献血量") if values.text(raw_volume) else 0
            units = values.decimal(raw_units, "治疗量") if values.text(raw_units) else 0.0
            if units not in PLATELET_UNITS:
                raise CellError(
                    f"机采血小板的治疗量应为 1、1.5 或 2（此行 {values.text(raw_units) or '空'}）"
                )
            return volume, units
        except CellError as exc:
            column = "therapeutic_units" if "治疗量" in str(exc) else "volume_ml"
            self._add(row_no, column, str(exc))
            return None

    def _unit(self, jurisdiction: str, raw: str) -> tuple[int | None, str | None, str | None]:
        """The credited unit, or (None, raw, normalised) for the review queue; never a guess."""
        if not raw:
            return None, None, None
        key = (jurisdiction, raw)
        if key not in self.units:
            found = self.directories[jurisdiction].resolve(raw)
            self.units[key] = (found.unit.id if found.unit else None, found.normalized)
        unit_id, normalized = self.units[key]
        if unit_id is None:
            self.unmatched[key] = self.unmatched.get(key, 0) + 1
        return unit_id, raw[:255], normalized[:255]

    def _jurisdiction(self, value: Any) -> str:
        code = values.folded(values.required(value, "辖区"))
        if code not in self.today:
            known = "、".join(sorted(self.today)) or "（无）"
            raise CellError(f"辖区「{code}」不在账号配置文件中；已配置的辖区：{known}")
        return code

    def _cell(self, row_no: int, row: dict[str, Any], column: str, parse: Any) -> Any:
        try:
            return parse(row.get(column))
        except CellError as exc:
            self._add(row_no, column, str(exc))
            return None

    def _add(self, row_no: int, column: str, message: str) -> None:
        self.issues.add(self.file, row_no, self.headers.get(column, column), message)


def _record_id(value: Any) -> str:
    record_id = values.required(value, "记录号")
    if len(record_id) > 64:
        raise CellError(f"记录号过长（{len(record_id)} 个字符，最多 64）")
    return record_id
