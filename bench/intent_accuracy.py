"""Accuracy and speed of the intent + slot parser (`bot.intents.parse_query`) on its corpus.

    .venv/bin/python bench/intent_accuracy.py [--no-write] [--check] [--repeat 200]

The corpus `tests/data/liaison_utterances.csv` has one message a row —
`text,intent,year,months,period,unit_text,role` — typed as liaisons and office staff type them,
labelled against the reference date **2026-03-15** (so 「上个月」 is 2026-02 and 「截至目前」 is
January–March 2026). `months` is the 1-based month list (`3`, `1,2,3`), `year` the absolute
year or empty when the message does not say one. Prints accuracy per intent and overall, slot
accuracy (year, months, period, unit_text), every misread row, and µs per call; writes
bench/sections/intents.md. Targets (issue 4): ≥ 95 % overall and no intent below 90 %; with
`--check` the exit status is 1 when one is missed. tests/test_intents.py asserts the same
targets through `load_corpus` and `evaluate`, so the test and this report cannot disagree.
"""

from __future__ import annotations

import argparse
import csv
import os
import platform
import statistics
import sys
import time
from collections import Counter
from dataclasses import dataclass
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bot.intents import INTENTS, Query, parse_query  # noqa: E402
from models.periods import month_list, parse_months  # noqa: E402

REFERENCE_DATE = date(2026, 3, 15)
CORPUS = ROOT / "tests" / "data" / "liaison_utterances.csv"
OUT = ROOT / "bench" / "sections" / "intents.md"
OVERALL_TARGET = 0.95
INTENT_TARGET = 0.90
SLOTS = ("year", "months", "period", "unit_text")


@dataclass(frozen=True)
class Row:
    """One labelled message; `months` as the parser's bit set."""

    text: str
    intent: str
    year: int | None
    months: int
    period: str
    unit_text: str
    role: str


def load_corpus(path: Path = CORPUS) -> list[Row]:
    with path.open(encoding="utf-8", newline="") as handle:
        return [
            Row(
                text=rec["text"],
                intent=rec["intent"],
                year=int(rec["year"]) if rec["year"] else None,
                months=parse_months(rec["months"]) if rec["months"] else 0,
                period=rec["period"],
                unit_text=rec["unit_text"],
                role=rec["role"],
            )
            for rec in csv.DictReader(handle)
        ]


@dataclass(frozen=True)
class Result:
    row: Row
    query: Query

    @property
    def intent_ok(self) -> bool:
        return self.query.intent == self.row.intent

    def slot_ok(self, slot: str) -> bool:
        return bool(getattr(self.query, slot) == getattr(self.row, slot))

    def slot_errors(self) -> list[str]:
        """「months 2 ≠ 3」 for each slot read wrong: got first, then the label."""
        errors = []
        for slot in SLOTS:
            if not self.slot_ok(slot):
                got, want = getattr(self.query, slot), getattr(self.row, slot)
                errors.append(f"{slot} {_show(slot, got)} ≠ {_show(slot, want)}")
        return errors


def _show(slot: str, value: object) -> str:
    if slot == "months" and isinstance(value, int):
        return ",".join(map(str, month_list(value))) or "–"
    return repr(value) if value not in (None, "") else "–"


@dataclass(frozen=True)
class Report:
    results: list[Result]

    def overall(self) -> float:
        return sum(r.intent_ok for r in self.results) / len(self.results)

    def per_intent(self) -> dict[str, tuple[int, int]]:
        """intent → (rows labelled with it and read as it, rows labelled with it)."""
        total = Counter(r.row.intent for r in self.results)
        right = Counter(r.row.intent for r in self.results if r.intent_ok)
        return {i: (right[i], total[i]) for i in INTENTS if total[i]}

    def per_role(self) -> dict[str, tuple[int, int]]:
        total = Counter(r.row.role for r in self.results)
        right = Counter(r.row.role for r in self.results if r.intent_ok)
        return {role: (right[role], n) for role, n in sorted(total.items())}

    def slot_accuracy(self) -> dict[str, tuple[int, int, int, int]]:
        """slot → (right, all rows, right where the label sets it, rows where it is set)."""
        table = {}
        for slot in SLOTS:
            labelled = [r for r in self.results if getattr(r.row, slot) not in (None, "", 0)]
            table[slot] = (
                sum(r.slot_ok(slot) for r in self.results),
                len(self.results),
                sum(r.slot_ok(slot) for r in labelled),
                len(labelled),
            )
        return table

    def misread(self) -> list[Result]:
        return [r for r in self.results if not r.intent_ok or r.slot_errors()]

    def failures(self) -> list[str]:
        """The targets missed, in words (empty when all are met)."""
        missed = []
        if self.overall() < OVERALL_TARGET:
            missed.append(f"overall {self.overall():.1%} < {OVERALL_TARGET:.0%}")
        for intent, (right, total) in self.per_intent().items():
            if right / total < INTENT_TARGET:
                missed.append(f"{intent} {right}/{total} < {INTENT_TARGET:.0%}")
        return missed


def evaluate(rows: list[Row], today: date = REFERENCE_DATE) -> Report:
    return Report([Result(row, parse_query(row.text, today=today)) for row in rows])


# How far to trust the figures above: the parser was tuned on this corpus, so its own score
# says little about new phrasings. The held-out batch's first pass is the honest estimate.
PROVENANCE = (
    "How the corpus was built: the first 327 rows were written before the parser, as liaisons "
    "and office staff type (issue 4's examples included), and the parser was then developed "
    "against them. Then 82 new rows were written and scored before any change: **76/82 intents "
    "right (92.7 %), 75/82 rows fully right** — the best estimate of accuracy on unseen "
    "phrasings. The six misses (「还少几个人」, 「还有几个指标没完成」, 「看看更多」, "
    "「怎么使用」, 「献血计划是怎样的」, 「全年计划」) and the slot miss (「到目前」 not read as "
    "year-to-date) were fixed by general rules, and the batch merged into the corpus. So a "
    "score of 100 % here is a regression guard, not a measure of unseen accuracy."
)

# a worst case for each bound the parser relies on: the 200-character cut, emoji stripping,
# the month-range regex, and a long message that is a real question
STRESS = {
    "5,000 characters": "这个月还差多少" + "啊" * 4993,
    "200 dense CJK chars": "慈利县三月还差多少人次一季度上半年截至目前" * 10,
    "100 month separators": "1、" * 100 + "月",
    "emoji only": "😀🙏👍" * 60,
}


def _per_call_us(text: str, repeat: int, chunks: int = 5) -> float:
    """The fastest of `chunks` runs' mean call time (as timeit does): the machine is shared,
    and someone else's work can only add time, never remove it."""
    per_chunk = max(1, repeat // chunks)
    means = []
    for _ in range(chunks):
        start = time.perf_counter_ns()
        for _ in range(per_chunk):
            parse_query(text, today=REFERENCE_DATE)
        means.append((time.perf_counter_ns() - start) / per_chunk / 1000)
    return min(means)


def timing(rows: list[Row], repeat: int) -> dict[str, float | str]:
    """µs per call for each corpus message (median of its `repeat` calls), then across messages."""
    for row in rows:  # warm-up: regex caches, dataclass machinery
        parse_query(row.text, today=REFERENCE_DATE)
    per_text = sorted((_per_call_us(row.text, repeat), row.text) for row in rows)
    values = [us for us, _ in per_text]
    out: dict[str, float | str] = {
        "median": statistics.median(values),
        "p90": values[int(len(values) * 0.9)],
        "max": values[-1],
        "slowest": per_text[-1][1],
    }
    for name, text in STRESS.items():
        out[name] = _per_call_us(text, repeat)
    return out


def _pct(right: int, total: int) -> str:
    return f"{right / total:.1%}" if total else "–"


def render(report: Report, times: dict[str, float | str], command: str, repeat: int) -> str:
    rows = report.results
    missed = report.failures()
    verdict = "all targets met." if not missed else "MISSED: " + "; ".join(missed)
    lines = [
        "## Intent parser accuracy (`bot.intents.parse_query`)",
        "",
        f"Command: `{command}` (run {date.today().isoformat()}).",
        "",
        f"Corpus `tests/data/liaison_utterances.csv`: {len(rows)} messages, "
        f"{sum(r.row.intent == 'none' for r in rows)} of them negatives (`none`), "
        f"reference date {REFERENCE_DATE.isoformat()}. Targets (issue 4): ≥ 95 % overall, "
        "no intent below 90 %.",
        "",
        f"**Overall intent accuracy: {report.overall():.1%}** "
        f"({sum(r.intent_ok for r in rows)}/{len(rows)}); {verdict}",
        "",
        PROVENANCE,
        "",
        "| intent | right / rows | accuracy |",
        "|---|---:|---:|",
    ]
    for intent, (right, total) in report.per_intent().items():
        lines.append(f"| {intent} | {right}/{total} | {_pct(right, total)} |")
    lines += ["", "| role | right / rows | accuracy |", "|---|---:|---:|"]
    for role, (right, total) in report.per_role().items():
        lines.append(f"| {role} | {right}/{total} | {_pct(right, total)} |")
    lines += [
        "",
        "| slot | right, all rows | right, rows where the label sets it |",
        "|---|---:|---:|",
    ]
    for slot, (right, total, right_set, total_set) in report.slot_accuracy().items():
        lines.append(
            f"| {slot} | {right}/{total} ({_pct(right, total)}) "
            f"| {right_set}/{total_set} ({_pct(right_set, total_set)}) |"
        )
    lines += ["", "Misread rows (wrong intent or any wrong slot):", ""]
    misread = report.misread()
    lines += [
        f"- `{r.row.text!r}`: expected {r.row.intent}, got {r.query.intent}"
        + ("; " + "; ".join(r.slot_errors()) if r.slot_errors() else "")
        for r in misread
    ] or ["- none"]
    lines += [
        "",
        f"Speed: µs per call on {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; each message parsed {repeat} times in 5 chunks "
        "(fastest chunk), then the distribution over messages. Not a test: it depends on the "
        "machine, and this one is shared with other work.",
        "",
        "| input | µs per call |",
        "|---|---:|",
        f"| corpus, median message | {times['median']:.1f} |",
        f"| corpus, 90th percentile | {times['p90']:.1f} |",
        f"| corpus, slowest (`{times['slowest']!r}`) | {times['max']:.1f} |",
    ]
    lines += [f"| {name} | {times[name]:.1f} |" for name in STRESS]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--no-write", action="store_true", help="do not rewrite the section")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--repeat", type=int, default=200, help="calls per message when timing")
    args = parser.parse_args(argv)
    command = ".venv/bin/python bench/intent_accuracy.py" + (
        f" --repeat {args.repeat}" if args.repeat != 200 else ""
    )
    report = evaluate(load_corpus())
    text = render(report, timing(load_corpus(), args.repeat), command, args.repeat)
    print(text)
    if not args.no_write:
        OUT.write_text(text, encoding="utf-8")
        print(f"written to {OUT.relative_to(ROOT)}")
    return 1 if args.check and report.failures() else 0


if __name__ == "__main__":
    sys.exit(main())
