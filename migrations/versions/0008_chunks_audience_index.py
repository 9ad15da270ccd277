"""A GIN index on the chunks' audience, for the exact BM25 scorer of a small audience.

A reader who may see a small share of the index is ranked exactly (retrieval/search.py): its lexical branch
scores the chunks holding the question's selective terms that the reader may read. Without this index the
audience condition is checked on every candidate's heap row after the tsvector index found it; with it the
planner intersects the two GIN bitmaps first and reads only the reader's candidates (BENCHMARKS.md,
"Session 6: access").

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-01
"""

from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS chunks_audience_idx ON chunks USING gin (audience)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS chunks_audience_idx")
