"""donor extras: emergency-call consent

Revision ID: 0005_donor_extras
Revises: 0004_partial_unmatched_index
Create Date: 2026-11-23 19:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_donor_extras"
down_revision = "0004_partial_unmatched_index"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "emergency_consents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("jurisdiction", sa.String(length=64), nullable=False),
        sa.Column("openid", sa.String(length=128), nullable=False),
        sa.Column("blood_type", sa.String(length=8), nullable=False),
        sa.Column("consented_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("withdrawn_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_emergency_consents")),
        sa.UniqueConstraint(
            "jurisdiction", "openid", name=op.f("uq_emergency_consents_jurisdiction_openid")
        ),
    )
    op.create_index(
        "ix_emergency_consents_type", "emergency_consents", ["jurisdiction", "blood_type"]
    )


def downgrade() -> None:
    op.drop_index("ix_emergency_consents_type", table_name="emergency_consents")
    op.drop_table("emergency_consents")
