"""Impact-ordered BM25 postings per lexeme (retrieval/lexical_index.py).

`postings` holds a lexeme's best chunks as packed (int8 chunk id, float4 BM25 term weight) entries, best
first. Stored uncompressed (STORAGE EXTERNAL) so that a search reads only the slice it needs. Left NULL
here: the next sync that finds NULL postings refreshes the lexicon, and searches score BM25 the exact
(slower) way until then. `lexicon_stats.max_chunk_id` is the newest chunk the postings cover: newer chunks
are scored exactly by each search until the next rebuild.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-22
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE lexicon ADD COLUMN IF NOT EXISTS postings bytea")
    op.execute("ALTER TABLE lexicon ALTER COLUMN postings SET STORAGE EXTERNAL")
    op.execute("ALTER TABLE lexicon_stats ADD COLUMN IF NOT EXISTS max_chunk_id bigint")


def downgrade() -> None:
    op.execute("ALTER TABLE lexicon_stats DROP COLUMN IF EXISTS max_chunk_id")
    op.execute("ALTER TABLE lexicon DROP COLUMN IF EXISTS postings")
