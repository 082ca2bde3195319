"""Assemble BENCHMARKS.md from the sections the benchmarks write (bench/sections/*.md).

    .venv/bin/python bench/report.py

Each benchmark writes its own section with the machine, date, command, figures,
baseline and targets; this only puts them in one file, in a fixed order.
"""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SECTIONS = Path(__file__).resolve().parent / "sections"
ORDER = ["webhook", "imports", "progress", "quota", "intents", "entitlement", "broadcast"]
HEADER = """# Benchmarks

Measured figures for donorbot, one section per benchmark, each written by the
benchmark itself with the command that reproduces it. Targets come from the issues;
speed is compared with a baseline measured in the same run, never with a constant.
`make bench` runs them all and rewrites this file (`bench/report.py`).
"""


def main() -> None:
    names = ORDER + sorted(p.stem for p in SECTIONS.glob("*.md") if p.stem not in ORDER)
    parts = [HEADER]
    for name in names:
        path = SECTIONS / f"{name}.md"
        if path.exists():
            parts.append(path.read_text(encoding="utf-8").strip() + "\n")
    (ROOT / "BENCHMARKS.md").write_text("\n".join(parts), encoding="utf-8")
    print(f"BENCHMARKS.md: {len(parts) - 1} sections")


if __name__ == "__main__":
    main()
