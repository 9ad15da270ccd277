"""Audiences: who may read each article (retrieval/access.py).

`articles.audience` is the article's audience tokens (`public`, `everyone`, Slack user-group ids; empty =
held back) and `articles.held_back` why an article is indexed but never answered. Chunks and vectors carry
a copy of the audience, as they carry `source_id`, so that the dense and lexical branches filter in the
same statement that ranks (an HNSW iterative scan, or an exact ranking of a small audience through the GIN
index). Existing rows keep `everyone`, the default audience of a source; rows written later without an
audience get none (held back), so a writer that forgets the column fails closed.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("articles", "chunks", "embeddings"):
        op.execute(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS audience text[] NOT NULL DEFAULT '{{everyone}}'")
        op.execute(f"ALTER TABLE {table} ALTER COLUMN audience SET DEFAULT '{{}}'")
    op.execute("ALTER TABLE articles ADD COLUMN IF NOT EXISTS held_back text")
    op.execute("CREATE INDEX IF NOT EXISTS embeddings_audience_idx ON embeddings USING gin (audience)")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS embeddings_audience_idx")
    op.execute("ALTER TABLE articles DROP COLUMN IF EXISTS held_back")
    for table in ("embeddings", "chunks", "articles"):
        op.execute(f"ALTER TABLE {table} DROP COLUMN IF EXISTS audience")
