"""`unit_vectors.vectors_f16`: the answer units' vectors as float16, half the table (~310 MB on the aws index).

The answerer ranks a question's candidate sentences by cosine similarity; float16 keeps ~3 significant
digits, a cosine error of ~1e-4, and the answers of the demo and aws answer sets do not change
(BENCHMARKS.md, "Session 9: ops"). Every stored row is converted, so a warmed index stays warm.

The table is rebuilt rather than updated in place: an UPDATE would leave the float32 values behind in
TOAST until a VACUUM FULL. Other processes' reads and writes of the table wait for the migration's
transaction (seconds, BENCHMARKS.md) and then find the new table.

Code of revision 0012 still runs on it: it asks for the `vectors` column, gets "column does not exist",
and computes the units' vectors instead of reading them (retrieval/unit_vectors.py at 0012 catches database
errors on both its read and its write, and its warm retries later). Its answers stay right, cold answers
slower, until it is replaced: hence `compatible_with_previous`.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

import numpy as np
from alembic import op
from sqlalchemy import text

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

compatible_with_previous = True

BATCH = 500  # rows per statement: ~4 MB of float32 vectors on the aws index


def _rebuild(old_column: str, old_dtype: str, new_column: str, new_dtype: str) -> None:
    conn = op.get_bind()
    # The rows wait in a temporary table while the table is created anew under its own name, so that its
    # constraints get their default names (PostgreSQL avoids names still taken by the old table's).
    conn.execute(text("""
        LOCK TABLE unit_vectors IN SHARE MODE;
        CREATE TEMPORARY TABLE unit_vectors_old ON COMMIT DROP AS SELECT * FROM unit_vectors;
        CREATE INDEX ON unit_vectors_old (chunk_id, space_id);
        DROP TABLE unit_vectors;
        """))
    conn.execute(text(f"""
        CREATE TABLE unit_vectors (
            chunk_id bigint NOT NULL REFERENCES chunks(id) ON DELETE CASCADE,
            space_id int NOT NULL REFERENCES embedding_spaces(id) ON DELETE CASCADE,
            unit_hashes bytea NOT NULL,
            {new_column} bytea NOT NULL,
            PRIMARY KEY (chunk_id, space_id)
        );
        -- Packed floats do not compress: storing them out of line uncompressed spares the attempt.
        ALTER TABLE unit_vectors ALTER COLUMN {new_column} SET STORAGE EXTERNAL;
        """))
    after = (-1, -1)
    while True:
        rows = conn.execute(text(
            f"SELECT chunk_id, space_id, unit_hashes, {old_column} FROM unit_vectors_old "
            "WHERE (chunk_id, space_id) > (:c, :s) ORDER BY chunk_id, space_id LIMIT :n"),
            {"c": after[0], "s": after[1], "n": BATCH}).all()
        if not rows:
            break
        conn.execute(text(
            "INSERT INTO unit_vectors SELECT * FROM unnest(CAST(:c AS bigint[]), CAST(:s AS int[]), "
            "CAST(:h AS bytea[]), CAST(:v AS bytea[]))"),
            {"c": [r[0] for r in rows], "s": [r[1] for r in rows], "h": [bytes(r[2]) for r in rows],
             "v": [np.frombuffer(bytes(r[3]), dtype=old_dtype).astype(new_dtype).tobytes() for r in rows]})
        after = (rows[-1][0], rows[-1][1])
    conn.execute(text("""
        DROP TABLE unit_vectors_old;
        -- Counting what a space has prepared (the status line) and a dropped space's cascade.
        CREATE INDEX unit_vectors_space_idx ON unit_vectors (space_id);
        """))


def upgrade() -> None:
    _rebuild("vectors", "<f4", "vectors_f16", "<f2")


def downgrade() -> None:
    _rebuild("vectors_f16", "<f2", "vectors", "<f4")
