"""A B-tree on the embeddings' space and source, for searches filtered by source.

pgvector 0.8's iterative HNSW scans return full results for a filter only while the matching rows are
found within `hnsw.max_scan_tuples` (20,000) index tuples: a source holding 0.5% of 1M chunks came back
short for 19% of questions, one holding 0.04% for 85%. With this index the planner reads a small source's
rows directly and ranks them exactly (15-20 ms at 1M chunks, every result complete), and keeps the HNSW
index for large sources (measured in BENCHMARKS.md, "Scale and peers").

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-22
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("CREATE INDEX IF NOT EXISTS embeddings_space_source_idx ON embeddings (space_id, source_id)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS embeddings_space_source_idx")
