"""Benefits policy engine: free-blood rules, honours, perks and donation intervals as data.

Rule sets live in `data/policies/*.toml` (see docs/policies.md). `load_policies` reads
and validates them once; everything else is a pure function over loaded policies.
"""

from bot.policy.dates import local_date
from bot.policy.engine import (
    Donation,
    DonationWindow,
    Entitlement,
    LedgerEntry,
    MissingFigure,
    NextChange,
    credited_ml,
)
from bot.policy.entitlement import (
    FamilyEntitlement,
    FamilyShare,
    entitlement,
    family_entitlement,
    quick_answer,
)
from bot.policy.honours import Honour, Ineligible, honours, next_eligible, next_honour, perks
from bot.policy.loader import load_policies
from bot.policy.model import Contact, Gap, Perk, Policy, PolicyError

__all__ = [
    "Contact",
    "Donation",
    "DonationWindow",
    "Entitlement",
    "FamilyEntitlement",
    "FamilyShare",
    "Gap",
    "Honour",
    "Ineligible",
    "LedgerEntry",
    "MissingFigure",
    "NextChange",
    "Perk",
    "Policy",
    "PolicyError",
    "credited_ml",
    "entitlement",
    "family_entitlement",
    "honours",
    "load_policies",
    "local_date",
    "next_eligible",
    "next_honour",
    "perks",
    "quick_answer",
]
