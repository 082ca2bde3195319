"""Imports of plans, donations and liaisons from CSV/XLSX files (SPEC §8), and the review queue.

Public API (the CLI and `donorbot demo load` call these):

- `import_plan_file(sessions, settings, path, *, dry_run, actor, year_override, demo)`
- `import_donation_file(sessions, settings, path, *, dry_run, actor, clock, progress)`
- `import_donation_rows(sessions, settings, rows, *, dry_run, actor, synthetic, clock, progress,
  source)`
- `import_liaison_file(sessions, settings, path, *, dry_run, actor)`
- `import_ledger_file(sessions, settings, path, *, dry_run, actor, clock)` (用血/报销 ledger)

Each raises `ImportFailed` (every problem, with file, row and column) and writes nothing when
the input has errors; each returns a report dataclass.
"""

from bot.imports.donations import DonationImportReport, import_donation_file, import_donation_rows
from bot.imports.issues import ImportFailed, ImportIssue
from bot.imports.ledger import LedgerImportReport, import_ledger_file
from bot.imports.liaisons import LiaisonImportReport, import_liaison_file
from bot.imports.plans import PlanImportReport, import_plan_file

__all__ = [
    "DonationImportReport",
    "ImportFailed",
    "ImportIssue",
    "LedgerImportReport",
    "LiaisonImportReport",
    "PlanImportReport",
    "import_donation_file",
    "import_donation_rows",
    "import_ledger_file",
    "import_liaison_file",
    "import_plan_file",
]
