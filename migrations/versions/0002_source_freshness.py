"""Source freshness: when the last failure of each source happened.

`sources.last_success_at` and `last_error` exist; `last_error_at` says how long a source has been
failing (shown by `kbbot status` and the App Home). `sources.checkpoint` (already there) holds
`{"cursor": <the connector's checkpoint>, "retry": [external ids that failed]}`.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE sources ADD COLUMN IF NOT EXISTS last_error_at timestamptz")


def downgrade() -> None:
    op.execute("ALTER TABLE sources DROP COLUMN IF EXISTS last_error_at")
