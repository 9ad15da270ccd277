"""`lexicon_stats.scoring`: the BM25 settings the stored postings were computed with.

The postings hold precomputed term weights (k1, b, title and heading weights, depth), while the exact
scorer and the delta read the settings of the running process. Recording them lets a sync rebuild the
postings when they changed (a release with new defaults, or an operator's edit), so that every search
branch scores alike. Left NULL here: the next sync rebuilds.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-01
"""

from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE lexicon_stats ADD COLUMN IF NOT EXISTS scoring text")


def downgrade() -> None:
    op.execute("ALTER TABLE lexicon_stats DROP COLUMN IF EXISTS scoring")
