"""The audit log: one call, used by imports, invites, broadcasts and console edits."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from models.people import AuditEntry


def audit(
    session: AsyncSession, actor: str, action: str, jurisdiction: str | None, **detail: Any
) -> None:
    """Add an audit entry to the caller's unit of work (committed with what it records)."""
    session.add(AuditEntry(actor=actor, action=action, jurisdiction=jurisdiction, detail=detail))
