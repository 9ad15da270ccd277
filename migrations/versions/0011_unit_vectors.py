"""`unit_vectors`: the embeddings of each passage's answer units (sentences, list items, table rows).

The extractive answerer and the abstention gate embed every unit of the top passages: ~38 units and
~1,600 tokens a question, 94% of a cold answer on the aws index (BENCHMARKS.md, Session 7). Stored here
once per passage and embedding space, they are shared by every process and survive restarts.

One row per (passage, space): the units' identities (a 16-byte hash of the exact text each unit is
embedded as, in order) and their float32 vectors packed in the same order. A unit whose hash is not in
the row (the unit splitting changed) is never served from it. Vectors only, never text: nothing of a
restricted passage is readable here, and readers reach a row only through a chunk id they may read.
The foreign keys cascade, so a re-synced (changed) or removed passage takes its vectors with it. A row
whose passage has no units holds empty values: it marks the passage as prepared.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-01
"""

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE IF NOT EXISTS unit_vectors (
            chunk_id bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            space_id int NOT NULL REFERENCES embedding_spaces(id) ON DELETE CASCADE,
            unit_hashes bytea NOT NULL,
            vectors bytea NOT NULL,
            PRIMARY KEY (chunk_id, space_id)
        );
        -- Packed float32s do not compress: storing them out of line uncompressed spares the attempt.
        ALTER TABLE unit_vectors ALTER COLUMN vectors SET STORAGE EXTERNAL;
        -- Counting what a space has prepared (the status line) and a dropped space's cascade.
        CREATE INDEX IF NOT EXISTS unit_vectors_space_idx ON unit_vectors (space_id);
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE IF EXISTS unit_vectors")
