"""partial unmatched index

Revision ID: 0004_partial_unmatched_index
Revises: 0003_invites
Create Date: 2026-11-23 19:25:33.071070
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op


revision = '0004_partial_unmatched_index'
down_revision = '0003_invites'
branch_labels = None
depends_on = None


WHERE = sa.text("unit_id IS NULL")


def upgrade() -> None:
    # Only the review queue (unit_id IS NULL) needs this index; as a full index every
    # imported donation paid for an entry nobody reads.
    op.drop_index("ix_donations_unmatched", table_name="donations")
    op.create_index(
        "ix_donations_unmatched",
        "donations",
        ["jurisdiction", "unit_raw_normalized"],
        postgresql_where=WHERE,
        sqlite_where=WHERE,
    )


def downgrade() -> None:
    op.drop_index("ix_donations_unmatched", table_name="donations")
    op.create_index("ix_donations_unmatched", "donations", ["jurisdiction", "unit_raw_normalized"])
