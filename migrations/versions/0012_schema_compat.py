"""`schema_compat`: which kbbot releases may still run on this database (rolling deploys).

One row, written by the kbbot that migrated the database last: the revision it migrated to, the oldest
code revision that may run on it (each migration's `compatible_with_previous`, walked back from the
newest) and its version. An older kbbot that finds the database at a revision it does not know reads it
to decide between running (with a warning) and refusing with the release to upgrade to
(retrieval/schema_versions.py).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-01
"""

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

# A new table that the previous release never reads: its code runs on this schema unchanged.
compatible_with_previous = True


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS schema_compat (
            id boolean PRIMARY KEY DEFAULT true CHECK (id),
            revision text NOT NULL,
            oldest_code_revision text NOT NULL,
            migrated_by text NOT NULL,
            migrated_at timestamptz NOT NULL DEFAULT now()
        )
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS schema_compat")
