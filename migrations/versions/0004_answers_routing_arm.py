"""The routing arm of each logged answer, next to the model that wrote it, and the fallback reason.

`answers.model` is the model that actually wrote the answer. When the tone model failed and the base model
answered, that alone put the answer in the base arm of an A/B. `arm` keeps what the router assigned
(`tone` / `base`; NULL when no router chose a model: relevance-gate abstentions, failures, extractive-only
deployments, and answers logged before this revision); `fallback_reason` says why a later model of the
chain wrote it (what the earlier ones failed with). No backfill: which arm an older base-model answer
belonged to was never stored.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("ALTER TABLE answers ADD COLUMN IF NOT EXISTS arm text")
    op.execute("ALTER TABLE answers ADD COLUMN IF NOT EXISTS fallback_reason text")


def downgrade() -> None:
    op.execute("ALTER TABLE answers DROP COLUMN IF EXISTS fallback_reason")
    op.execute("ALTER TABLE answers DROP COLUMN IF EXISTS arm")
