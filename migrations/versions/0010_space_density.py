"""`embedding_spaces.density*`: the index's neighbour density, measured at the end of a sync and stored.

The abstention gate's bar follows the density (retrieval/neighbour_density.py). Measuring it reads every
member-readable passage (~1.5 s on a 40k-passage index), which each `kbbot ask` paid before; a sync that
changed passages now measures it once and readers take the stored value. NULL `density_measured_at`: not
measured yet (an index synced before this revision); the first reader measures and stores it. NULL
`density` with a time: measured, but nothing member-readable (the gate keeps its base bar).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-01
"""

from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE embedding_spaces ADD COLUMN IF NOT EXISTS density double precision, "
               "ADD COLUMN IF NOT EXISTS density_measured_at timestamptz, "
               "ADD COLUMN IF NOT EXISTS density_passages integer")


def downgrade() -> None:
    op.execute("ALTER TABLE embedding_spaces DROP COLUMN IF EXISTS density, "
               "DROP COLUMN IF EXISTS density_measured_at, DROP COLUMN IF EXISTS density_passages")
